"""The single path of a tool call, shared by every transport: `invoke_tool` runs the call through PIPELINE, the
steps in the order they apply, each a small object with one job that lets the call go on or ends it:

    security events -> after the answer -> answer -> count -> audit -> block list -> scope -> arguments
    -> rate limit -> time limit -> bulkhead -> breaker -> remembered answer -> run

The outer steps see every outcome: a call is audited (and answered only once its event is committed), counted,
answered, then the work the tool left for after its answer runs, and a refusal that matters to security is
recorded last. The guards (apps.security.guards) refuse with a domain error (`ApplicationError`), which passes
through unchanged for the edge to translate; the run turns any other exception into an `InternalError` whose
message never carries a traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from pydantic import ValidationError

from apps.compliance.audit import AuditNotRecorded, audit_write, subject_for
from apps.core import metrics
from apps.core.errors import (
    ApplicationError,
    InsufficientScope,
    InvalidArguments,
    NotFound,
    RateLimited,
    RejectedInput,
    ServiceUnavailable,
    TimedOut,
    UnknownTool,
)
from apps.core.logs import call_context
from apps.core.runtime import deferred_work, run_deferred
from apps.core.tracing import span
from apps.security import events, guards
from apps.tools import runner
from apps.tools.caller import Caller
from apps.tools.models import Score
from apps.tools.registry import TOOLS, Tool
from apps.tools.results import Question, question_read

logger = logging.getLogger(__name__)
calls_log = logging.getLogger("music21_platform.calls")

Result = dict[str, Any]
Proceed = Callable[["Call"], Result]


@dataclass
class Call:
    """One tool call on its way through the pipeline: what was asked, by whom, and what the steps have found."""

    tool: Tool
    caller: Caller
    arguments: dict[str, Any] | None
    subject: Any = None  # the audit actor's subject (pseudonym): the caller, or the staff acting for them
    parsed: Any = None  # the arguments, validated (ValidArguments)
    deadline: float | None = None  # time.monotonic() by which the call must end (TimeLimit)
    after_waiting: Callable[[], None] | None = None  # asked again after a wait for a tool process (Breaker)
    question: Question | None = None  # a remembered tool's question, its score row read (Remembered)
    started: float = field(default_factory=time.perf_counter)
    outcome: str = "error"  # the status it ended with, once audited

    # What the guards know of a call (apps.security.guards.Guarded).
    @property
    def tool_name(self) -> str:
        return self.tool.name

    @property
    def group(self) -> str:
        return self.tool.group

    @property
    def user_id(self) -> Any:
        # Whoever made the call is charged for it: a staff member reading a person's score spends their own limits.
        return self.caller.actor.pk

    @property
    def client_id(self) -> str | None:
        return self.caller.client_id

    @property
    def scopes(self) -> frozenset[str]:
        return self.caller.scopes

    @property
    def required_scope(self) -> str | None:
        return self.tool.scope


def get_tool(name: str) -> Tool:
    try:
        return TOOLS[name]
    except KeyError:
        raise UnknownTool(f"Unknown tool {name!r}. Available tools: {', '.join(sorted(TOOLS))}.") from None


def invoke_tool(name: str, arguments: dict[str, Any] | None, *, caller: Caller) -> Result:
    """Run tool `name` with `arguments` as `caller` through PIPELINE and return its JSON-serialisable result with
    status "success", or raise the ApplicationError it ended with."""
    tool = get_tool(name)
    call = Call(tool=tool, caller=caller, arguments=arguments, subject=subject_for(caller.actor))
    context = call_context.set(
        {
            "request_id": caller.request_id,
            "user": call.subject.pseudonym if call.subject else None,
            "client_id": caller.client_id,
            "tool": tool.name,
        }
    )
    attributes = {"tool.name": tool.name, "tool.group": tool.group, "score.id": _targets(arguments) or None}
    try:
        with span("tool_call", **attributes, transport=caller.transport, request_id=caller.request_id) as call_span:
            try:
                return _through(PIPELINE, call)
            finally:
                if call_span is not None:
                    call_span.set_attribute("outcome", call.outcome)
    finally:
        call_context.reset(context)


def _through(steps: Sequence[Any], call: Call) -> Result:
    if not steps:
        return _run(call)
    return steps[0](call, lambda each: _through(steps[1:], each))


def _run(call: Call) -> Result:
    with span("music21.run"):
        result = runner.run_tool(
            call.tool,
            call.caller,
            call.parsed,
            deadline=call.deadline,
            after_waiting=call.after_waiting,
            question=call.question,
        )
    return {"status": "success", **result}


# --- The steps of the tool layer ----------------------------------------------------------------------------------


class SecurityEventsRecorded:
    """A refusal that matters to security (a scope violation, hostile input, a rate limit, a probe of another
    user's score) is recorded once the call has been answered: it must not delay the answer, nor stop the trail."""

    def __call__(self, call: Call, proceed: Proceed) -> Result:
        try:
            return proceed(call)
        except ApplicationError as error:
            _record_security_event(error, call.tool, call.caller, call.arguments)
            raise


class Afterwards:
    """What the tool left for after its answer (`apps.core.runtime.after_answer`: remembering an analysis answer)
    runs once the call has been answered, whatever the outcome; a failure there is logged, not answered."""

    def __call__(self, call: Call, proceed: Proceed) -> Result:
        with deferred_work() as later:
            try:
                return proceed(call)
            finally:
                run_deferred(later)


class Answered:
    """The transport's early answer (`Caller.answer`), once the outcome is audited and counted: security events and
    clean-up follow it (see apps.mcp_bridge.server.until_answered)."""

    def __call__(self, call: Call, proceed: Proceed) -> Result:
        if call.caller.answer is None:
            return proceed(call)
        try:
            result = proceed(call)
        except ApplicationError as error:
            call.caller.answer(error)
            raise
        call.caller.answer(result)
        return result


class Counted:
    """Every call counted by tool and outcome, timed, and logged."""

    def __call__(self, call: Call, proceed: Proceed) -> Result:
        try:
            return proceed(call)
        finally:
            elapsed = time.perf_counter() - call.started
            metrics.REQUESTS.labels(tool=call.tool.name, status=call.outcome).inc()
            metrics.REQUEST_DURATION.labels(tool=call.tool.name).observe(elapsed)
            calls_log.info("tool call", extra={"outcome": call.outcome, "duration_ms": round(elapsed * 1000, 2)})


class Audited:
    """Every outcome is in the trail before it is answered: a call whose event cannot be committed fails with
    ServiceUnavailable instead of its outcome (nothing queued, nothing dropped)."""

    def __call__(self, call: Call, proceed: Proceed) -> Result:
        try:
            result = proceed(call)
        except ApplicationError as error:
            call.outcome = error.code
            self._record(call, error)
            raise
        except BaseException:
            call.outcome = "error"
            self._record(call, None)
            raise
        call.outcome = "success"
        self._record(call, result)
        return result

    @staticmethod
    def _record(call: Call, outcome: Result | ApplicationError | None) -> None:
        """Commit the call's event; if that fails, raise what the caller is told instead of `outcome` (None: an
        unexpected exception, on its way out undelivered as well)."""
        caller = call.caller
        action, detail = f"tool.{call.tool.name}", None
        if caller.staff is not None:
            # The staff member's access to the person's data, naming the person by pseudonym: it is not the
            # person's own activity (their dashboard selects events by actor); her export lists it apart, as what
            # administrators did with her data.
            owner = subject_for(caller.user)
            action, detail = f"admin.{call.tool.name}", {"subject": owner.pseudonym if owner else ""}
        try:
            with span("audit.record"):
                audit_write(
                    action=action,
                    outcome=call.outcome,
                    user=caller.actor,
                    subject=call.subject,
                    detail=detail,
                    client_id=caller.client_id,
                    ip=caller.ip,
                    target=_targets(call.arguments),
                    duration_ms=(time.perf_counter() - call.started) * 1000,
                    request_id=caller.request_id,
                    transport=caller.transport,
                )
        except AuditNotRecorded as exc:
            logger.error("tool %s: %s (request %s); it fails unavailable", call.tool.name, exc, caller.request_id)
            if outcome is not None:
                unrecorded = _not_recorded(call.tool, outcome, caller.request_id)
                call.outcome = unrecorded.code
                raise unrecorded from None


class ValidArguments:
    """The arguments must match the tool's declared model (pydantic); checked after the scope, so that a caller
    without the scope learns nothing of the arguments."""

    def __call__(self, call: Call, proceed: Proceed) -> Result:
        call.parsed = validate_arguments(call.tool, call.arguments)
        return proceed(call)


class TimeLimit:
    """The call's deadline: its time limit counted from when the transport received it, so that every wait (for a
    call thread, a bulkhead slot, a tool process) is part of it. A call that has waited past it is not run."""

    def __call__(self, call: Call, proceed: Proceed) -> Result:
        limit = float(getattr(settings, call.tool.timeout_setting))
        call.deadline = call.caller.arrived + limit
        waited = time.monotonic() - call.caller.arrived
        if waited >= limit:
            raise TimedOut(
                f"The call to {call.tool.name!r} waited {waited:.1f} s for the server to take it up, past its "
                f"time limit ({limit:g} s, {call.tool.timeout_setting}), and did not run; try again in a moment."
            )
        return proceed(call)


class Remembered:
    """A remembered tool's question asked before is answered here, on the call's own thread, from beside the parsed
    score if this process holds it, else from the database (apps.tools.results): no tool thread or process, no
    music21. A new question goes on to the run with the score row read here, which the tool thread or process
    then does not read again."""

    def __call__(self, call: Call, proceed: Proceed) -> Result:
        if not call.tool.remembered:
            return proceed(call)
        with runner.tool_errors(call.tool, call.caller):
            call.question = question_read(owner=call.caller.user, tool=call.tool.name, arguments=call.parsed)
            result = call.question.remembered()
        if result is None:
            return proceed(call)
        return {"status": "success", **result}


PIPELINE = (
    SecurityEventsRecorded(),
    Afterwards(),
    Answered(),
    Counted(),
    Audited(),
    guards.BlockList(),
    guards.ScopeRequired(),
    ValidArguments(),
    guards.RateLimit(),
    TimeLimit(),
    guards.Bulkhead(),
    guards.Breaker(),
    Remembered(),
)


def _not_recorded(tool: Tool, outcome: Result | ApplicationError, request_id: str) -> ServiceUnavailable:
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


def _record_security_event(error: ApplicationError, tool: Tool, caller: Caller, arguments: Any) -> None:
    # A staff member's refused call is theirs, not the person whose score they were reading.
    who = {"user": caller.actor, "client_id": caller.client_id, "ip": caller.ip}
    if isinstance(error, InsufficientScope):
        events.security_event_record(kind="scope_violation", tool=tool.name, required=tool.scope, **who)
    elif isinstance(error, RejectedInput):
        events.security_event_record(
            kind="hostile_input", input_kind=error.kind, tool=tool.name, message=str(error)[:200], **who
        )
    elif isinstance(error, RateLimited):
        events.security_event_record(kind="rate_limit", severity="info", tool=tool.name, group=tool.group, **who)
    elif isinstance(error, NotFound) and isinstance(arguments, dict) and isinstance(arguments.get("score_id"), str):
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
