"""What a request to /mcp must be before the SDK serves it, and what a client is told when it is not: a bearer
token (401), a POST (405), one JSON-RPC message of MCP's (400, -32600) and a protocol version this server speaks
(400, -32022). `McpFront` applies them, in that order, the same way to every protocol era.

The SDK's 2025-era transport drops a request whose id is not a string or an integer as if it were a notification
(202, no answer), and answers a batch, a string or a message without `"jsonrpc"` with a dump of pydantic's
validation errors as -32602; its 2026-era entry answers those -32600 with one message for all, and an unknown
`MCP-Protocol-Version` with the per-request envelope's -32602 (or, with the envelope, a -32022 that names only the
envelope's versions). Here both eras get JSON-RPC 2.0's answer, with a message naming the problem.
"""

from __future__ import annotations

from typing import Any

from mcp_types import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    UNSUPPORTED_PROTOCOL_VERSION,
    ErrorData,
    JSONRPCError,
    UnsupportedProtocolVersionErrorData,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from starlette.responses import JSONResponse, Response

from apps.tools.registry import TOOLS

# Every protocol version /mcp serves, on any request: the initialize handshake's (the SDK's stateless transport
# serves each as asked, a request without the handshake too) and the per-request envelope's.
PROTOCOL_VERSIONS = (*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS)

_NOT_POST = {
    "GET": "This server offers no event stream on GET /mcp (it sends nothing unasked)",
    "DELETE": "This server keeps no sessions, so there is none to end with DELETE /mcp",
}


def _tool_scopes() -> str:
    """The scopes the tools need, as a scope value (RFC 6749 section 3.3)."""
    return " ".join(sorted({tool.scope for tool in TOOLS.values() if tool.scope}))


def unauthorised(resource_metadata_url: str, *, token_refused: bool) -> Response:
    """The 401 of a request without a usable bearer token. RFC 6750 section 3.1: a request that carries no bearer
    token (none at all, or credentials of another scheme) is only told where to find out how to get one; a bearer
    token that was refused (unknown, expired, revoked, for another resource) is also told it is invalid.

    Both name the scopes the tools need (RFC 6750 section 3, which the MCP authorization specification asks of a
    server): SDK clients ask for the challenge's scope, and without it for every scope of the protected-resource
    metadata, music21:admin among them, which no tool needs (staff would grant an assistant operator access)."""
    challenge = f'resource_metadata="{resource_metadata_url}", scope="{_tool_scopes()}"'
    if token_refused:
        description = "The bearer token is unknown, expired or revoked, or was issued for another resource"
        challenge = f'error="invalid_token", error_description="{description}", {challenge}'
        body = {"error": "invalid_token", "error_description": f"{description}."}
    else:
        body = {"error_description": f"A bearer token is required: {resource_metadata_url} says how to get one."}
    return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": f"Bearer {challenge}"})


def method_not_allowed(method: str) -> Response:
    """405 for every method but POST, with `Allow: POST` (RFC 9110 section 15.5.6): this stateless server has no
    event stream to open with GET (the MCP specification's 405 for that case; the SDK clients then carry on with
    POST alone: an open stream would only hold a connection and its task until the client gave up), and no
    session to end with DELETE."""
    reason = _NOT_POST.get(method, f"{method} is not a method of /mcp")
    error = ErrorData(code=INVALID_REQUEST, message=f"{reason}: send requests by POST.")
    return _error_response(JSONRPCError(jsonrpc="2.0", id=None, error=error), 405, headers={"Allow": "POST"})


def message_problem(decoded: Any) -> Response | None:
    """The 400 for a POST body that is not one JSON-RPC message as MCP has them, or None. JSON-RPC 2.0 section 5:
    an invalid request is answered -32600 with a null id; MCP (2025-06-18 on) has no batches, and its request ids
    are strings or integers. Parameters that are not an object are -32602, answered with the request's id."""
    if isinstance(decoded, list):
        return _invalid_request(
            "JSON-RPC batches are not supported (MCP has had none since 2025-06-18): send one message per POST"
        )
    if not isinstance(decoded, dict):
        return _invalid_request("A JSON-RPC message must be a JSON object")
    if decoded.get("jsonrpc") != "2.0":
        return _invalid_request('A JSON-RPC message must carry "jsonrpc": "2.0"')
    if "id" in decoded and not _is_request_id(decoded["id"]):
        return _invalid_request(f"A request id must be a string or an integer, not {_json_kind(decoded['id'])}")
    if not isinstance(decoded.get("method", ""), str):
        return _invalid_request("The method must be a string")
    if "method" not in decoded and "result" not in decoded and "error" not in decoded:
        return _invalid_request("A JSON-RPC message must name its method")
    if decoded.get("params") is not None and not isinstance(decoded["params"], dict):
        error = ErrorData(code=INVALID_PARAMS, message="params must be an object")
        return _error_response(JSONRPCError(jsonrpc="2.0", id=decoded.get("id"), error=error), 400)
    return None


def unsupported_version(requested: str, request_id: Any) -> Response:
    """The 400 for an `MCP-Protocol-Version` this server does not speak, naming it and every version it does
    (2026-07-28's UnsupportedProtocolVersionError: "the versions it does support", which the specification's own
    example shows a server of both eras listing; `server/discover` names the same list)."""
    error = ErrorData(
        code=UNSUPPORTED_PROTOCOL_VERSION,
        message=f"Unsupported protocol version {requested!r} (MCP-Protocol-Version): this server speaks "
        f"{', '.join(PROTOCOL_VERSIONS)}",
        data=UnsupportedProtocolVersionErrorData(supported=list(PROTOCOL_VERSIONS), requested=requested).model_dump(),
    )
    request_id = request_id if _is_request_id(request_id) else None  # a notification's answer has none
    return _error_response(JSONRPCError(jsonrpc="2.0", id=request_id, error=error), 400)


def _is_request_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float):
        return "a number with a fractional part"
    return "an array" if isinstance(value, list) else "an object"


def _invalid_request(message: str) -> Response:
    error = ErrorData(code=INVALID_REQUEST, message=message)
    return _error_response(JSONRPCError(jsonrpc="2.0", id=None, error=error), 400)


def _error_response(reply: JSONRPCError, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(
        reply.model_dump_json(by_alias=True), status_code=status, headers=headers, media_type="application/json"
    )
