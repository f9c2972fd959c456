"""The one family of domain errors. Services raise these; each edge (MCP, HTTP, the command line) translates them
once, using `code` and `http_status`. Their messages are written for the person or assistant who made the call."""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    code = "application_error"
    http_status = 400

    def __init__(self, message: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra or {}

    def as_dict(self) -> dict[str, Any]:
        return {"status": "error", "error": self.code, "message": self.message, **self.extra}

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross from tool worker processes to the server: rebuild them with their attributes, whatever
        # each subclass's constructor takes.
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[ApplicationError], message: str, state: dict[str, Any]) -> ApplicationError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class InvalidArguments(ApplicationError):
    code = "invalid_arguments"


class UnknownTool(ApplicationError):
    code = "unknown_tool"
    http_status = 404


class NotFound(ApplicationError):
    code = "not_found"
    http_status = 404


class AlreadyExists(ApplicationError):
    code = "already_exists"
    http_status = 409


class UnsupportedFormat(ApplicationError):
    code = "unsupported_format"


class ScoreParseError(ApplicationError):
    code = "unparseable_score"
    http_status = 422


class UnprocessableScore(ApplicationError):
    """The caller's score was read but cannot be written out or engraved (a duration MusicXML has no name for...):
    a problem with that score, named in the message, not a failure of the server."""

    code = "unprocessable_score"
    http_status = 422


class AnalysisError(ApplicationError):
    """The music itself does not allow the analysis (no notes, no chords, a melody out of every range...)."""

    code = "analysis_failed"
    http_status = 422


class RejectedInput(ApplicationError):
    """Input refused because it is oversized or looks hostile. `kind` names what was seen, for security events."""

    code = "rejected_input"
    http_status = 400

    def __init__(self, message: str, *, kind: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message, extra=extra)
        self.kind = kind


class InsufficientScope(ApplicationError):
    code = "insufficient_scope"
    http_status = 403

    def __init__(self, scope: str, tool: str) -> None:
        super().__init__(
            f"The tool {tool!r} needs the scope {scope!r}, which this token was not granted.",
            extra={"required_scope": scope},
        )
        self.scope = scope


# --- Refusals by the guards of the invocation path ------------------------------------------------------------


class RateLimited(ApplicationError):
    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, extra={"retry_after": round(retry_after, 1)})
        self.retry_after = retry_after


class Blocked(ApplicationError):
    code = "blocked"
    http_status = 403


class Busy(ApplicationError):
    code = "busy"
    http_status = 503


class InternalError(ApplicationError):
    """Something failed unexpectedly; logged under the request id, never shown to the caller as a traceback."""

    code = "internal_error"
    http_status = 500


class CircuitOpen(ApplicationError):
    code = "circuit_open"
    http_status = 503


class TimedOut(ApplicationError):
    code = "timeout"
    http_status = 504


class TooLarge(ApplicationError):
    """The call needed more memory than a tool process may take for one call (MAX_MEMORY_GB): what it asked of
    its score was too much, and it was stopped, as a call past its time limit is."""

    code = "too_large"
    http_status = 422


class DependencyFailed(ApplicationError):
    """Something the server depends on failed (the database, Redis, a tool worker process), not the caller: the
    only failures that count toward a tool group's circuit breaker (apps.security.breakers)."""

    code = "unavailable"
    http_status = 503


class ServiceUnavailable(DependencyFailed):
    """A dependency of the server (the database) is down: the call fails fast and can be retried later."""

    code = "unavailable"
    http_status = 503
    # Seconds an HTTP client is told to wait (Retry-After): the server connects again at the first request after
    # the database is back.
    RETRY_AFTER = 2


class WorkerDied(DependencyFailed):
    """The tool worker process running a call ended without answering (killed from outside, out of memory)."""

    code = "internal_error"
    http_status = 500
