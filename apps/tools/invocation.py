"""The single path of a tool call, shared by every transport.

    look up -> authorise (scope) -> validate arguments -> run -> result with status "success"

Domain errors (`ApplicationError`) pass through unchanged for the edge to translate; anything else is logged with
the request id and becomes an `InternalError` whose message never carries a traceback.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings
from pydantic import ValidationError

from apps.security import scopes
from apps.tools.errors import ApplicationError, InsufficientScope, InvalidArguments, UnknownTool
from apps.tools.registry import TOOLS, Tool

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

logger = logging.getLogger(__name__)


class InternalError(ApplicationError):
    code = "internal_error"
    http_status = 500


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
    """Run tool `name` with `arguments` as `caller` and return its JSON-serialisable result."""
    tool = get_tool(name)
    if not scopes.has_scope(caller.scopes, tool.scope):
        raise InsufficientScope(tool.scope or "", tool.name)
    parsed = validate_arguments(tool, arguments)
    try:
        result = tool.function(caller, parsed)
    except ApplicationError:
        raise
    except Exception as exc:
        logger.exception("tool %s failed (request %s)", tool.name, caller.request_id)
        raise InternalError(
            f"The tool {tool.name!r} failed unexpectedly; the error was logged under request id {caller.request_id}.",
            extra={"request_id": caller.request_id},
        ) from exc
    return {"status": "success", **result}


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
