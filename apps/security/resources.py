"""The protected resources this server is (RFC 8707 audiences), and which one a token may be used at.

Two resources, one authorization server:

- the MCP endpoint, `PUBLIC_URL/mcp`: what MCP clients name in `resource`, and what
  `/.well-known/oauth-protected-resource[/mcp]` describes;
- the HTTP APIs (`/server_stats`, `/compliance/report`, `/privacy/api/...`), the server's origin `PUBLIC_URL`.

A token bound to resources is accepted only by those resources, exactly. DOT's default matches by URL prefix,
under which a token for the origin would also open `/mcp`: an API integration's token must not be replayable
against the tools, nor an assistant's MCP token against the operator APIs. A token issued without `resource`
is bound to nothing and accepted by both (clients that predate RFC 8707).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from django.conf import settings

MCP_PATH = "/mcp"


def mcp_resource() -> str:
    return f"{settings.PUBLIC_URL}{MCP_PATH}"


def api_resource() -> str:
    return settings.PUBLIC_URL


def accepted_resources() -> set[str]:
    """What a client may name in `resource` when it asks this server for a token."""
    return {mcp_resource(), api_resource(), f"{api_resource()}/"}


def resource_of(uri: str) -> str:
    """The resource a request to `uri` is a request to. Only the path counts: the request reached this server
    whatever host name or scheme it carried (a proxy in front, an internal service name)."""
    path = urlsplit(uri).path
    base = urlsplit(settings.PUBLIC_URL).path.rstrip("/")
    if base and path.startswith(base):
        path = path[len(base) :]
    return mcp_resource() if path == MCP_PATH or path.startswith(f"{MCP_PATH}/") else api_resource()


def _normal(uri: str) -> str:
    return uri.rstrip("/")


def audience_allows(request_uri: str, audiences: Iterable[str]) -> bool:
    """DOT's RESOURCE_SERVER_TOKEN_RESOURCE_VALIDATOR: whether a token bound to `audiences` may be used for a
    request to `request_uri` (also called by `AccessToken.allows_audience` with a resource identifier)."""
    audiences = [_normal(audience) for audience in audiences]
    return not audiences or _normal(resource_of(request_uri)) in audiences


def audience_refusal(audiences: Iterable[str], request_uri: str) -> str:
    """What to tell the bearer of a token presented at a resource it was not issued for."""
    wanted = resource_of(request_uri)
    return (
        f"This token was issued for {', '.join(audiences)}; this endpoint belongs to the resource {wanted}. "
        f"Ask for a token with resource={wanted}."
    )


def resource_refusal(resource: str) -> str:
    """What to tell a client that asks for a token for a resource this server is not."""
    return (
        f"This server issues tokens only for {mcp_resource()} (the MCP endpoint) and {api_resource()} "
        f"(its HTTP APIs), not {resource!r}."
    )
