"""The single path of a tool call, shared by every transport.

    look up -> authorise (scope) -> validate arguments -> run -> result with status "success"

Domain errors (`ApplicationError`) pass through unchanged for the edge to translate; anything else is logged with
the request id and becomes an `InternalError` whose message never carries a traceback.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import InterfaceError, OperationalError
from pydantic import ValidationError

from apps.compliance.audit import AuditNotRecorded, audit_write, subject_for
from apps.core import metrics
from apps.core.errors import (
    ApplicationError,
    InsufficientScope,
    InternalError,
    InvalidArguments,
    NotFound,
    RateLimited,
    RejectedInput,
    ServiceUnavailable,
    UnknownTool,
)
from apps.core.logs import call_context
from apps.core.tracing import span
from apps.security import events, guards, scopes
from apps.tools import runner
from apps.tools.registry import TOOLS, Tool
from apps.tools.selectors import scores_stamp_name

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

logger = logging.getLogger(__name__)
calls_log = logging.getLogger("music21_platform.calls")


@dataclass(frozen=True)
class Caller:
    """Who is calling: the user every score belongs to, the scopes granted, and where the call came from."""

    user: AbstractBaseUser
    scopes: frozenset[str]
    client_id: str | None = None
    ip: str | None = None
    transport: str = "internal"
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # Long tools (analyze_corpus) report progress here and stop at the next step once `cancelled` is set; the
    # transport wires both to its client (MCP progress notifications and cancellation).
    progress: Callable[[int, int, str], None] | None = field(default=None, compare=False, repr=False)
    cancelled: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)
    # A transport that can answer before the call's security events and clean-up passes `answer`: invoke_tool
    # calls it once with the outcome (the result, or the ApplicationError the call ends with) as soon as the
    # call's audit event is written and the call counted (see apps.mcp_bridge.server.until_answered).
    answer: Callable[[dict[str, Any] | ApplicationError], None] | None = field(default=None, compare=False, repr=False)
    # The stamp of the user's scores as the call's admission read it (None without Redis): score rows this
    # process read under the same stamp are used again without a query (apps.tools.selectors.score_get).
    scores_stamp: str | None = None

    @classmethod
    def operator(cls, user: AbstractBaseUser, *, transport: str = "cli") -> Caller:
        """An operator acting as `user` from the server itself (command line, stdio): every scope."""
        return cls(user=user, scopes=scopes.ALL, transport=transport)


def get_tool(name: str) -> Tool:
    try:
        return TOOLS[name]
    except KeyError:
        raise UnknownTool(f"Unknown tool {name!r}. Available tools: {', '.join(sorted(TOOLS))}.") from None


def invoke_tool(name: str, arguments: dict[str, Any] | None, *, caller: Caller) -> dict[str, Any]:
    """Run tool `name` with `arguments` as `caller` and return its JSON-serialisable result.

    The guards, in order: block list -> scope -> arguments -> rate limit -> bulkhead -> circuit breaker ->
    timeout -> run (the first four in one round trip to Redis, see `guards.admit`); every outcome is audited (a
    call whose event cannot be written fails with `ServiceUnavailable` instead), counted, answered (`Caller.answer`,
    when the transport passed one), and refusals that matter to security are then recorded as security events.
    """
    tool = get_tool(name)
    started = time.perf_counter()
    outcome: dict[str, Any] | ApplicationError | None = None  # None: an unexpected exception, raised as it is
    targets = _targets(arguments)
    attributes = {"tool.name": tool.name, "tool.group": tool.group, "score.id": targets or None}
    subject = subject_for(caller.user)
    context = call_context.set(
        {
            "request_id": caller.request_id,
            "user": subject.pseudonym if subject else None,
            "client_id": caller.client_id,
            "tool": tool.name,
        }
    )
    with span("tool_call", **attributes, transport=caller.transport, request_id=caller.request_id) as call_span:
        try:
            with span("guards.admit"):
                parsed, refusal = _checked(tool, caller, arguments)
                admission = guards.admit(
                    group=tool.group,
                    user_id=caller.user.pk,
                    client_id=caller.client_id,
                    ip=caller.ip,
                    refusal=refusal,
                    stamps=(scores_stamp_name(caller.user.pk),),
                )
            runs_as = dataclasses.replace(caller, scores_stamp=admission.stamps[0])
            # The time limit counts from here: waits for a bulkhead slot or a tool process are part of it.
            deadline = time.monotonic() + float(getattr(settings, tool.timeout_setting))
            bulkhead = guards.bulkhead(tool.group, user_id=caller.user.pk, deadline=deadline)
            with span("guards.bulkhead"), bulkhead as at_once, span("music21.run"):
                result = guards.call_through_breaker(
                    tool.group,
                    runner.run_tool,
                    tool,
                    runs_as,
                    parsed,
                    deadline=deadline,
                    reading=admission.breaker if at_once else None,
                )
            outcome = {"status": "success", **result}
        except ApplicationError as error:
            outcome = error
        finally:
            elapsed = time.perf_counter() - started
            status = outcome.code if isinstance(outcome, ApplicationError) else "success" if outcome else "error"
            # The trail first: a call is answered only once its event is committed, and not with its outcome if
            # the event cannot be written (nothing queued, nothing dropped).
            try:
                with span("audit.record"):
                    audit_write(
                        action=f"tool.{tool.name}",
                        outcome=status,
                        user=caller.user,
                        subject=subject,
                        client_id=caller.client_id,
                        ip=caller.ip,
                        target=targets,
                        duration_ms=elapsed * 1000,
                        request_id=caller.request_id,
                        transport=caller.transport,
                    )
            except AuditNotRecorded as exc:
                logger.error("tool %s: %s (request %s); the call fails unavailable", tool.name, exc, caller.request_id)
                if outcome is not None:  # else an unexpected exception is on its way out, undelivered as well
                    outcome = _not_recorded(tool, outcome, caller.request_id)
                    status = outcome.code
            metrics.REQUESTS.labels(tool=tool.name, status=status).inc()
            metrics.REQUEST_DURATION.labels(tool=tool.name).observe(time.perf_counter() - started)
            if call_span is not None:
                call_span.set_attribute("outcome", status)
            if outcome is not None and caller.answer is not None:
                caller.answer(outcome)  # in the trail already; security events and logging follow the answer
            calls_log.info("tool call", extra={"outcome": status, "duration_ms": round(elapsed * 1000, 2)})
            call_context.reset(context)
        if isinstance(outcome, ApplicationError):
            _record_security_event(outcome, tool, caller, arguments)  # after the trail, which it must not stop
            raise outcome
        return outcome


def _not_recorded(tool: Tool, outcome: dict[str, Any] | ApplicationError, request_id: str) -> ServiceUnavailable:
    """What the caller is told instead of an outcome the audit trail could not record: whether a change was made."""
    why = "could not be recorded in the audit trail (the database refused the record or could not be reached)"
    retry = f"Try again in a moment (request id {request_id})."
    if isinstance(outcome, ApplicationError):
        ended = f"The call to {tool.name!r} ended with {outcome.code} ({outcome.message})"
        return ServiceUnavailable(f"{ended}, but it {why}, so that answer was not delivered. {retry}")
    if not tool.read_only:
        return ServiceUnavailable(
            f"The call to {tool.name!r} succeeded and the change was made, but it {why}, so its result was not "
            f"delivered. Look at your scores (list_scores) before repeating it. {retry}"
        )
    return ServiceUnavailable(
        f"The result of {tool.name!r} was not delivered because the call {why}; nothing was changed. {retry}"
    )


def _checked(tool: Tool, caller: Caller, arguments: dict[str, Any] | None) -> tuple[Any, ApplicationError | None]:
    """The call's arguments validated, or what is wrong with the call itself (scope, arguments): refused by
    `guards.admit`, after the block list."""
    try:
        if not scopes.has_scope(caller.scopes, tool.scope):
            raise InsufficientScope(tool.scope or "", tool.name)
        return validate_arguments(tool, arguments), None
    except ApplicationError as error:
        return None, error


def _targets(arguments: dict[str, Any] | None) -> str:
    """The score ids a call names, for the audit trail."""
    if not isinstance(arguments, dict):
        return ""
    names: list[str] = []
    for key, value in arguments.items():
        if key.endswith("score_id") and isinstance(value, str):
            names.append(f"score:{value[:128]}")
        elif key.endswith("score_ids") and isinstance(value, list):
            names.extend(f"score:{v[:128]}" for v in value[:10] if isinstance(v, str))
    return " ".join(names)


def run_function(tool: Tool, caller: Caller, parsed: Any) -> dict[str, Any]:
    """The tool's own work, wherever the runner puts it: unexpected exceptions become an InternalError."""
    started = time.perf_counter()
    try:
        return tool.function(caller, parsed)
    except ApplicationError:
        raise
    except (OperationalError, InterfaceError) as exc:
        logger.error("tool %s: the database is unavailable (%s, request %s)", tool.name, exc, caller.request_id)
        raise ServiceUnavailable(
            f"The database is unavailable; nothing was changed. Try again in a moment (request id {caller.request_id})."
        ) from exc
    except Exception as exc:
        logger.exception("tool %s failed (request %s)", tool.name, caller.request_id)
        raise InternalError(
            f"The tool {tool.name!r} failed unexpectedly; the error was logged under request id {caller.request_id}.",
            extra={"request_id": caller.request_id},
        ) from exc
    finally:
        metrics.ANALYSIS_DURATION.labels(tool=tool.name).observe(time.perf_counter() - started)


def _record_security_event(error: ApplicationError, tool: Tool, caller: Caller, arguments: Any) -> None:
    who = {"user": caller.user, "client_id": caller.client_id, "ip": caller.ip}
    if isinstance(error, InsufficientScope):
        events.security_event_record(kind="scope_violation", tool=tool.name, required=tool.scope, **who)
    elif isinstance(error, RejectedInput):
        events.security_event_record(
            kind="hostile_input", input_kind=error.kind, tool=tool.name, message=str(error)[:200], **who
        )
    elif isinstance(error, RateLimited):
        events.security_event_record(kind="rate_limit", severity="info", tool=tool.name, group=tool.group, **who)
    elif isinstance(error, NotFound) and isinstance(arguments, dict) and isinstance(arguments.get("score_id"), str):
        from apps.tools.models import Score

        others = Score.objects.filter(score_id=arguments["score_id"]).exclude(owner=caller.user)
        if others.exists():
            events.security_event_record(kind="cross_tenant", tool=tool.name, score_id=arguments["score_id"], **who)


def validate_arguments(tool: Tool, arguments: dict[str, Any] | None) -> Any:
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise InvalidArguments(f"Arguments for {tool.name!r} must be a JSON object, got {type(arguments).__name__}.")
    if not settings.STRICT_VALIDATION:
        arguments = {k: v for k, v in arguments.items() if k in tool.arguments.model_fields}
    try:
        return tool.arguments.model_validate(arguments, strict=settings.STRICT_VALIDATION)
    except ValidationError as exc:
        problems = "; ".join(_describe(error) for error in exc.errors(include_url=False))
        raise InvalidArguments(f"Invalid arguments for {tool.name!r}: {problems}.") from None


def _describe(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "arguments"
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown argument"
    if error["type"] == "missing":
        return f"{where}: required"
    return f"{where}: {error['msg'][0].lower()}{error['msg'][1:]}"
