"""What a client is told when a request's params fail the protocol's schema: which field, and how.

The SDK answers every such request -32602 "Invalid request parameters" with empty data, on purpose (no pydantic
text on the wire), which leaves a client to guess what it sent wrong. `name_params_problems`, a server middleware
(`Server.middleware`, the SDK's public hook around validation), words the failing fields from the error's
locations and types, never from the values sent, for every transport and protocol era alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import methods
from mcp_types.jsonrpc import INVALID_PARAMS
from pydantic import ValidationError

# How a field of a request's params fails the protocol's schema, in words (pydantic's error types).
_PARAMS_PROBLEMS = {
    "missing": "is required",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "bool_type": "must be a boolean",
    "list_type": "must be an array",
    "float_type": "must be a number",
}


async def name_params_problems(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Server middleware: a request whose params fail the protocol's schema is answered -32602 naming each
    failing field and how ("Invalid request parameters: params.arguments must be an object")."""
    try:
        return await call_next(ctx)
    except ValidationError as error:
        try:  # the request's params against the schema again: the failure may be another (a result's shape)
            methods.validate_client_request(ctx.method, ctx.protocol_version, ctx.params)
        except ValidationError as params_error:
            raise MCPError(
                INVALID_PARAMS, f"Invalid request parameters: {_params_problems(params_error, ctx.params)}"
            ) from error
        except (KeyError, ValueError):  # not a method or version of the protocol's: the SDK's answer stands
            pass
        raise


def _params_problems(error: ValidationError, params: Mapping[str, Any] | None) -> str:
    """The fields of `params` that `error` found wrong, each once ("params.name is required; ..."); a field that
    may be of several types is told all of them ("must be a string or an integer")."""
    problems: dict[str, list[str]] = {}
    for found in error.errors():
        path = _field_path(found["loc"], {"params": params}, missing=found["type"] == "missing")
        problem = _PARAMS_PROBLEMS.get(found["type"], "is not valid")
        if problem not in problems.setdefault(path, []):
            problems[path].append(problem)
    return "; ".join(f"{path} {_either(said)}" for path, said in problems.items())


def _either(problems: list[str]) -> str:
    kinds = [problem.removeprefix("must be ") for problem in problems if problem.startswith("must be ")]
    others = [problem for problem in problems if not problem.startswith("must be ")]
    return " or ".join(others + ([f"must be {' or '.join(kinds)}"] if kinds else []))


def _field_path(loc: tuple[int | str, ...], body: Any, *, missing: bool) -> str:
    """The dotted path of the field an error's `loc` points at, in the request as sent: a step not in it is the
    name of a union's member pydantic tried (skipped), unless it is the last step of a missing field."""
    path: list[str] = []
    for position, step in enumerate(loc):
        if isinstance(body, dict) and step in body:
            body = body[step]
            path.append(str(step))
        elif isinstance(body, list) and isinstance(step, int) and step < len(body):
            body = body[step]
            path.append(f"[{step}]")
        elif missing and position == len(loc) - 1:
            path.append(str(step))
    return ".".join(path).replace(".[", "[")
