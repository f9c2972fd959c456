"""The tool registry: each tool is declared once (name, description, arguments, scope, guard group, function).

Transports (MCP over HTTP or stdio, the `call_tool` command) list tools from here and call them only through
`apps.tools.invocation.invoke_tool`; nothing else keeps a list of tools.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from apps.security import scopes
from apps.security.groups import GROUPS

if TYPE_CHECKING:
    from music21 import stream

    from apps.tools.caller import Caller


class ToolArguments(BaseModel):
    """Base of every tool's argument model. Unknown arguments are refused (see STRICT_VALIDATION)."""

    model_config = ConfigDict(extra="forbid")


# A tool's function takes the caller and its validated arguments; a remembered analysis's takes the parsed music of
# the score its arguments name instead of the caller (below).
ToolFunction = Callable[["Caller", Any], dict[str, Any]] | Callable[["stream.Score", Any], dict[str, Any]]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    arguments: type[ToolArguments]
    scope: str | None
    group: str
    function: ToolFunction
    input_schema: dict[str, Any] = field(default_factory=dict)
    # The setting that bounds a call's time (REQUEST_TIMEOUT). Only background jobs that
    # report progress and stop when cancelled (analyze_corpus) take longer.
    timeout_setting: str = "REQUEST_TIMEOUT"
    # Whether the tool may run in a killable worker process (apps.tools.runner); tools that report progress and
    # watch the cancel flag run in the serving process instead.
    isolated: bool = True
    # Whether a call destroys what the caller stored (clients ask before calling such a tool).
    destructive: bool = False
    # Whether the tool analyses one of the caller's scores (its arguments' score_id) from the music alone, so that
    # its answers are remembered (apps.tools.results): a question asked before is answered on the call's own
    # thread, and the function, `function(music, arguments)`, runs only for a new one.
    remembered: bool = False

    @property
    def read_only(self) -> bool:
        """Whether a call changes nothing: what a read scope (or none) allows."""
        return self.scope in (scopes.READ, None)


TOOLS: dict[str, Tool] = {}


def tool(
    name: str,
    *,
    arguments: type[ToolArguments],
    scope: str | None,
    group: str,
    timeout_setting: str = "REQUEST_TIMEOUT",
    isolated: bool = True,
    destructive: bool = False,
    remembered: bool = False,
) -> Callable[[ToolFunction], ToolFunction]:
    """Declare the decorated function as the tool `name`; its docstring is the description clients see."""
    if group not in GROUPS:
        raise ValueError(f"Unknown guard group {group!r} for tool {name!r}")
    if remembered and "score_id" not in arguments.model_fields:
        raise ValueError(f"Remembered tool {name!r} takes no score_id: a remembered answer is an answer on one score")

    def register(function: ToolFunction) -> ToolFunction:
        if name in TOOLS:
            raise ValueError(f"Tool {name!r} is declared twice")
        TOOLS[name] = Tool(
            name=name,
            description=inspect.cleandoc(function.__doc__ or ""),
            arguments=arguments,
            scope=scope,
            group=group,
            function=function,
            input_schema=_schema(arguments),
            timeout_setting=timeout_setting,
            isolated=isolated,
            destructive=destructive,
            remembered=remembered,
        )
        return function

    return register


def _schema(arguments: type[ToolArguments]) -> dict[str, Any]:
    schema = arguments.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    return schema
