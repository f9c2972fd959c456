"""MCP over Streamable HTTP at /mcp, protected by the platform's own OAuth tokens.

The SDK does the protocol and the bearer-token plumbing (401 with `WWW-Authenticate: Bearer resource_metadata=...`);
this module only tells it how to verify our tokens and who a verified token acts for.

Stateless mode: every POST is served on its own, with no session kept in this process, so any uvicorn worker or
replica behind a load balancer can answer any request of the same client. Progress notifications of a long call
still reach the client, on that call's own SSE response stream.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.context import ServerRequestContext
from mcp.server.transport_security import TransportSecuritySettings

from apps.mcp_bridge.server import build_server, in_worker
from apps.security import metrics
from apps.security.events import security_event_record
from apps.security.services import token_verify, user_active_get
from apps.tools.errors import ApplicationError
from apps.tools.invocation import Caller

MCP_PATH = "/mcp"


def resource_url() -> str:
    """The protected resource, as clients name it in RFC 8707 `resource` parameters."""
    return f"{settings.PUBLIC_URL}{MCP_PATH}"


class NoUser(ApplicationError):
    code = "no_user"
    http_status = 403


class PlatformTokenVerifier:
    """Verifies bearer tokens against the platform's OAuth provider (see apps.security.services.token_verify)."""

    async def verify_token(self, token: str) -> AccessToken | None:
        verified = await in_worker(token_verify, raw_token=token, resource=resource_url())
        metrics.AUTH_ATTEMPTS.labels(result="success" if verified else "failure").inc()
        if verified is None:
            return None
        return AccessToken(
            token=token,
            client_id=verified.client_id,
            scopes=sorted(verified.scopes),
            expires_at=int(verified.expires_at.timestamp()),
            resource=verified.resource,
            subject=None if verified.user_id is None else str(verified.user_id),
        )


async def identify(ctx: ServerRequestContext[Any, Any]) -> Caller:
    """The Caller a verified token acts for: its user, its scopes, its client, the request's address."""
    request = ctx.request
    user = request.scope.get("user") if request is not None else None
    if not isinstance(user, AuthenticatedUser):  # the SDK's middleware lets no unauthenticated request through
        raise NoUser("This request carries no verified token.")
    token = user.access_token
    if token.expires_at is not None and token.expires_at < time.time():
        raise NoUser("The access token has expired; refresh it.")
    if token.subject is None:
        raise NoUser(
            "This token was issued to a client without a user (client credentials); tools act for a user, so "
            "authorize with the authorization-code flow."
        )
    account = await in_worker(_active_user, int(token.subject))
    client = request.client if request is not None else None
    return Caller(
        user=account,
        scopes=frozenset(token.scopes),
        client_id=token.client_id,
        ip=client.host if client else None,
        transport="mcp-http",
    )


def _active_user(pk: int) -> Any:
    user = user_active_get(pk=pk)
    if user is None:
        raise NoUser("The account this token was issued for no longer exists or is disabled.")
    return user


def _transport_security() -> TransportSecuritySettings:
    """Host and Origin checks against DNS rebinding: the configured hosts, and browsers on loopback (the MCP
    Inspector) or on the public origin."""
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


class RecordRefusedTokens:
    """ASGI middleware around /mcp: a request that presented a bearer token and was answered 401 is an
    authentication failure, recorded with its address (a request without any token is just discovery)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not any(name == b"authorization" for name, _ in scope.get("headers", [])):
            await self.app(scope, receive, send)
            return

        async def observe(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                client = scope.get("client")
                await in_worker(
                    security_event_record,
                    kind="auth_failure",
                    ip=client[0] if client else None,
                    endpoint="/mcp",
                    reason="bearer token refused (unknown, expired, revoked, disabled client or other resource)",
                )
            await send(message)

        await self.app(scope, receive, observe)


def build_mcp_app() -> Any:
    """The Starlette app serving /mcp; its lifespan runs the SDK's session manager."""
    server = build_server(identify=identify)
    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        transport_security=_transport_security(),
        auth=AuthSettings(
            issuer_url=settings.PUBLIC_URL,
            resource_server_url=resource_url(),
            required_scopes=[],  # each tool checks its own scope on the invocation path
            validate_token_resource=False,  # token_verify already refuses tokens issued for another resource
        ),
        token_verifier=PlatformTokenVerifier(),
    )
    return RecordRefusedTokens(app)
