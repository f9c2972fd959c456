"""What a request to /mcp must be before the SDK serves it, and what a client is told when it is not: a bearer
token (401). `McpFront` applies it."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response


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
