"""MCP over Streamable HTTP at /mcp, protected by the platform's own OAuth tokens.

The SDK does the protocol and the bearer-token plumbing; this module tells it how to verify our tokens and who a
verified token acts for, and assembles /mcp with the front that answers a request without a token (401 with
`WWW-Authenticate: Bearer resource_metadata=...`) and decides which of its two ways answers the others
(apps.mcp_bridge.front).

Stateless mode: every POST is served on its own, with no session kept in this process, so any uvicorn worker or
replica behind a load balancer can answer any request of the same client. A call is answered with one JSON body
(by the SDK's single-request driver, straight from `McpFront`), unless it asked for progress notifications: then
on its own SSE response stream (by the SDK's transport), which carries them. A GET, which would open a standing
stream for messages the server never sends unasked, is answered 405, as the MCP specification allows.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import InterfaceError, OperationalError
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, BearerAuthBackend, RequireAuthMiddleware
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.context import ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import AnyHttpUrl, Field
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route

from apps.core import metrics
from apps.core.errors import ApplicationError
from apps.mcp_bridge.admission import PROTOCOL_VERSIONS
from apps.mcp_bridge.cancellation import Cancellations
from apps.mcp_bridge.front import DatabaseUnavailable, McpFront, ResponseModePerRequest, max_body_bytes
from apps.mcp_bridge.server import build_server, in_worker
from apps.security.services import token_authenticate, token_authenticate_remembered, token_epoch_async
from apps.tools.invocation import Caller

logger = logging.getLogger(__name__)

MCP_PATH = "/mcp"


def resource_url() -> str:
    """The protected resource, as clients name it in RFC 8707 `resource` parameters."""
    return f"{settings.PUBLIC_URL}{MCP_PATH}"


class NoUser(ApplicationError):
    code = "no_user"
    http_status = 403


class PlatformAccessToken(AccessToken):
    """The SDK's verified token, carrying the account it acts for (looked up in the same worker-thread hop)."""

    account: Any = Field(default=None, exclude=True)


class PlatformTokenVerifier:
    """Verifies bearer tokens against the platform's OAuth provider (see apps.security.services.token_authenticate)."""

    async def verify_token(self, token: str) -> AccessToken | None:
        resource = resource_url()
        # A token this process remembers under the current epoch is answered here, on the event loop: a hop to
        # a worker thread and back costs about as much as the whole check (0.1-0.2 ms).
        epoch = await token_epoch_async()
        found = token_authenticate_remembered(raw_token=token, resource=resource, epoch=epoch)
        if found is None:
            try:
                found = await in_worker(token_authenticate, raw_token=token, resource=resource)
            except (OperationalError, InterfaceError) as exc:
                # Not a refusal: a 401 would make the client throw its (good) token away and authorise again.
                raise DatabaseUnavailable() from exc
        metrics.AUTH_ATTEMPTS.labels(result="success" if found else "failure").inc()
        if found is None:
            return None
        verified, account = found
        return PlatformAccessToken(
            token=token,
            client_id=verified.client_id,
            scopes=sorted(verified.scopes),
            expires_at=int(verified.expires_at.timestamp()),
            resource=verified.resource,
            subject=None if verified.user_id is None else str(verified.user_id),
            account=account,
        )


async def identify(ctx: ServerRequestContext[Any, Any]) -> Caller:
    """The Caller a verified token acts for: its user, its scopes, its client, the request's address."""
    request = ctx.request
    user = request.scope.get("user") if request is not None else None
    if not isinstance(user, AuthenticatedUser) or not isinstance(user.access_token, PlatformAccessToken):
        # the SDK's middleware lets no unauthenticated request through
        raise NoUser("This request carries no verified token.")
    token = user.access_token
    if token.expires_at is not None and token.expires_at < time.time():
        raise NoUser("The access token has expired; refresh it.")
    if token.subject is None:
        raise NoUser(
            "This token was issued to a client without a user (client credentials); tools act for a user, so "
            "authorize with the authorization-code flow."
        )
    if token.account is None:
        raise NoUser("The account this token was issued for no longer exists or is disabled.")
    client = request.client if request is not None else None
    return Caller(
        user=token.account,
        scopes=frozenset(token.scopes),
        client_id=token.client_id,
        ip=client.host if client else None,
        transport="mcp-http",
    )


def _transport_security() -> TransportSecuritySettings:
    """Host and Origin checks against DNS rebinding: the configured hosts, and browsers on loopback (the MCP
    Inspector) or on the public origin. The origins are also those CORS lets read /mcp (`_cross_origin`)."""
    hosts = list(settings.ALLOWED_HOSTS)
    if "*" in hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    public = urlsplit(settings.PUBLIC_URL)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[pattern for host in hosts for pattern in (host, f"{host}:*")],
        allowed_origins=[
            f"{public.scheme}://{public.netloc}",
            "http://127.0.0.1:*",
            "http://localhost:*",
            "http://[::1]:*",
        ],
    )


# What a browser-based client sends to /mcp in either protocol era, and what it must be able to read of the answers
# (a 2025-era server's session id, the 401's challenge, the version).
CORS_REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "Accept",
    "MCP-Protocol-Version",
    "Mcp-Session-Id",
    "Last-Event-ID",
    "Mcp-Method",
    "Mcp-Name",
]
CORS_EXPOSED_HEADERS = ["Mcp-Session-Id", "WWW-Authenticate", "Mcp-Protocol-Version"]


def _cross_origin(app: Any, security: TransportSecuritySettings) -> CORSMiddleware:
    """Starlette's CORS for browser-based MCP clients (the MCP Inspector's page on localhost:6274), for exactly the
    origins the transport's DNS rebinding check accepts: their preflights are answered here, before the token is
    asked for (a browser sends none with them), and every answer to them names their origin. GET and DELETE are
    allowed across origins only so that such a client can read their 405. No cookies are involved: the bearer
    token is a header the client sets."""
    if security.enable_dns_rebinding_protection:
        origins = "|".join(
            re.escape(origin.removesuffix(":*")) + ":[0-9]+" if origin.endswith(":*") else re.escape(origin)
            for origin in security.allowed_origins
        )
    else:  # ALLOWED_HOSTS=*: the transport accepts any origin
        origins = ".*"
    return CORSMiddleware(
        app,
        allow_origin_regex=origins,
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=CORS_REQUEST_HEADERS,
        expose_headers=CORS_EXPOSED_HEADERS,
    )


def build_mcp_app() -> Any:
    """/mcp: `McpFront` (bearer tokens, the 401 with resource metadata, calls answered with one JSON body) before
    the SDK's app: its stateless Streamable HTTP transport (any worker or replica can answer any request); the
    lifespan runs the SDK's session manager and listens for the cancellations other processes relay. CORS, from
    the transport's own list of origins, is in front of it all."""
    security = _transport_security()
    manager = ResponseModePerRequest(
        app=build_server(identify=identify, protocol_versions=PROTOCOL_VERSIONS),
        stateless=True,
        security_settings=security,
        max_request_body_size=max_body_bytes(),
    )
    metadata_url = build_resource_metadata_url(AnyHttpUrl(resource_url()))
    endpoint = RequireAuthMiddleware(  # a second lock: McpFront answers every request without a token itself
        StreamableHTTPASGIApp(manager),
        [],  # each tool checks its own scope on the invocation path
        metadata_url,
    )
    cancellations = Cancellations.from_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager.run(), cancellations.listening():
            yield

    app = Starlette(routes=[Route(MCP_PATH, endpoint=endpoint)], lifespan=lifespan)
    # token_authenticate refuses tokens issued for another resource itself
    front = McpFront(
        app,
        manager,
        BearerAuthBackend(PlatformTokenVerifier()),
        resource_metadata_url=str(metadata_url),
        cancellations=cancellations,
    )
    return _cross_origin(front, security)
