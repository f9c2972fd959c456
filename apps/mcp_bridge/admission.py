"""What a request to /mcp must be before the SDK serves it, and what a client is told when it is not: a bearer
token (401) and a POST (405). `McpFront` applies them, in that order, the same way to every protocol era."""

from __future__ import annotations

from mcp_types import INVALID_REQUEST, ErrorData, JSONRPCError
from starlette.responses import JSONResponse, Response

_NOT_POST = {
    "GET": "This server offers no event stream on GET /mcp (it sends nothing unasked)",
    "DELETE": "This server keeps no sessions, so there is none to end with DELETE /mcp",
}


def unauthorised(resource_metadata_url: str, *, token_refused: bool) -> Response:
    """The 401 of a request without a usable bearer token. RFC 6750 section 3.1: a request that carries no bearer
    token (none at all, or credentials of another scheme) is only told where to find out how to get one; a bearer
    token that was refused (unknown, expired, revoked, for another resource) is also told it is invalid."""
    challenge = f'resource_metadata="{resource_metadata_url}"'
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
    reply = JSONRPCError(jsonrpc="2.0", id=None, error=error)
    return Response(
        reply.model_dump_json(by_alias=True), status_code=405, headers={"Allow": "POST"}, media_type="application/json"
    )
