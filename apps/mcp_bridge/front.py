"""How /mcp answers a request before the SDK's transport: bearer tokens authenticated once (and the 401 without
one), what is not one JSON-RPC message of MCP's refused alike in every protocol era, a plain call answered with one
JSON body by the SDK's single-request driver, everything else handed to the SDK's transport, and the request body
limit (which follows MAX_SCORE_BYTES) applied and explained.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import anyio
import pydantic_core
from django.conf import settings
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import BearerAuthBackend
from mcp.server.connection import Connection
from mcp.server.runner import serve_one
from mcp.server.streamable_http import MCP_PROTOCOL_VERSION_HEADER, MCP_SESSION_ID_HEADER, check_accept_headers
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecurityMiddleware
from mcp.shared.dispatcher import CallOptions
from mcp.shared.exceptions import NoBackChannelError
from mcp.shared.jsonrpc_dispatcher import handler_exception_to_error_data
from mcp.shared.message import ServerMessageMetadata
from mcp.shared.transport_context import TransportContext
from mcp_types import (
    DEFAULT_NEGOTIATED_VERSION,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    ErrorData,
    JSONRPCError,
    JSONRPCRequest,
    JSONRPCResponse,
    RequestId,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from apps.core.errors import ServiceUnavailable
from apps.mcp_bridge import admission
from apps.mcp_bridge.cancellation import Cancellations
from apps.mcp_bridge.server import in_worker
from apps.security.events import security_event_record

logger = logging.getLogger(__name__)

# The largest request body /mcp reads, from MAX_SCORE_BYTES: a tools/call carrying a source that import_score
# admits must reach it, so that the tool answers with its own limit. JSON writes a text source in at most three
# times its UTF-8 size (a quote or line break escaped takes two bytes; a letter escaped as \uXXXX up to three
# times its own; XML and the other text formats hold no other control characters), a base64 MIDI in 4/3 of its
# size; the rest of the request is small. (The SDK's own default, 4 MiB, turned away sources the tool admits
# under the default MAX_SCORE_BYTES of 5 MiB.) The SDK's transport is given this limit; McpFront answers a body
# declared larger with a JSON-RPC error that names it, which the SDK's clients show as it is.
BODY_BYTES_PER_SOURCE_BYTE = 3
ENVELOPE_BYTES = 64 * 1024


def max_body_bytes() -> int:
    """The largest request body /mcp reads (see BODY_BYTES_PER_SOURCE_BYTE)."""
    return BODY_BYTES_PER_SOURCE_BYTE * settings.MAX_SCORE_BYTES + ENVELOPE_BYTES


class ResponseModePerRequest(StreamableHTTPSessionManager):
    """The SDK's transport, for what `McpFront` does not answer itself (a stream, `initialize`, a notification, a
    malformed request, a wrong header): answers a call that asked for no progress notifications with one JSON
    body, and a call that did (a `progressToken` in its `_meta`) with an event stream that carries them."""

    @property  # type: ignore[override]
    def json_response(self) -> bool:
        return not _progress_wanted()

    @json_response.setter
    def json_response(self, value: bool) -> None:
        pass  # decided per request, by McpFront

    async def answer_one(self, message: JSONRPCRequest, request: Request) -> Response:
        """One request answered with one JSON body by the SDK's single-request driver (`serve_one`: the same
        server, handlers, validation and error mapping as the transport's)."""
        dctx = _OneRequest(request_id=message.id, message_metadata=ServerMessageMetadata(request_context=request))
        version = request.headers.get(MCP_PROTOCOL_VERSION_HEADER) or DEFAULT_NEGOTIATED_VERSION
        connection = Connection.from_envelope(version, None, None)
        reply: JSONRPCResponse | JSONRPCError
        try:
            result = await serve_one(
                self.app,
                dctx,
                message.method,
                message.params,
                connection=connection,
                # The lifespan state the manager's run() entered, which its own request paths read the same way:
                # the SDK keeps it only as `_lifespan_state`, with no public accessor. tests/mcp_bridge/
                # test_streams.py pins it.
                lifespan_state=self._lifespan_state,
            )
            reply = JSONRPCResponse(jsonrpc="2.0", id=message.id, result=result)
        except Exception as exc:  # the SDK dispatcher's mapping, so that both paths answer alike
            error = handler_exception_to_error_data(exc)
            if error is None:
                logger.exception("handler for %r raised", message.method)
                error = ErrorData(code=0, message=str(exc))
            reply = JSONRPCError(jsonrpc="2.0", id=message.id, error=error)
        return Response(reply.model_dump_json(by_alias=True, exclude_unset=True), media_type="application/json")

    @functools.cached_property
    def security(self) -> TransportSecurityMiddleware:
        """The transport's Host and Origin checks (against DNS rebinding) and its Content-Type check of a POST."""
        return TransportSecurityMiddleware(self.security_settings)

    def answerable(self, request: Request, body: bytes, decoded: Any) -> JSONRPCRequest | None:
        """The request (`decoded` from `body`, which passed the transport's security checks), when it is answered
        with one JSON body and passes every other check the SDK's transport makes of a JSON-mode POST on the
        protocol versions it serves statelessly; else None."""
        version = request.headers.get(MCP_PROTOCOL_VERSION_HEADER)
        if (
            _asks_for_progress(body)
            or (version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS)  # the SDK's modern entry
            or MCP_SESSION_ID_HEADER in request.headers
            or not check_accept_headers(request)[0]
            or request.headers.get("content-type", "").split(";")[0].strip() != "application/json"
            or not isinstance(decoded, dict)
            or "id" not in decoded
            or decoded.get("method") == "initialize"
        ):
            return None
        try:
            return JSONRPCRequest.model_validate(decoded)
        except ValidationError:
            return None


@dataclass
class _OneRequest:
    """The SDK's `DispatchContext` for one request answered with one JSON body: nothing can reach the client
    before the answer, so notifications are dropped (as the SDK's transport drops them in JSON mode) and
    requests to the client are refused."""

    request_id: RequestId
    message_metadata: ServerMessageMetadata
    transport: TransportContext = field(
        default_factory=lambda: TransportContext(kind="streamable-http", can_send_request=False)
    )
    cancel_requested: anyio.Event = field(default_factory=anyio.Event)
    can_send_request: bool = False

    async def send_raw_request(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None
    ) -> dict[str, Any]:
        raise NoBackChannelError(method)

    async def notify(self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None) -> None:
        return None

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        return None


# The body of the POST that McpFront read ahead, before it handed the request to the SDK's app.
_peeked_body: ContextVar[bytes] = ContextVar("mcp_peeked_body", default=b"")


def _progress_wanted() -> bool:
    """Whether this request is answered as an event stream: it asked for progress."""
    return _asks_for_progress(_peeked_body.get())


def _asks_for_progress(body: bytes) -> bool:
    return b'"progressToken"' in body


class McpFront:
    """The front of /mcp, before the SDK's Starlette app:

    - authenticates the bearer token, as the SDK's `AuthenticationMiddleware` and `AuthContextMiddleware` would
      (with its `BearerAuthBackend`): the request's `user` and `auth`, and the SDK's auth context; when the
      database cannot be reached to check it, answers 503 with `Retry-After` (`DatabaseUnavailable`);
    - answers a request without a verified token with 401 (`admission.unauthorised`, which points at the resource
      metadata), and records a refused one as an authentication failure (a request without any credentials is
      just a client discovering how to authorise). The SDK's `RequireAuthMiddleware` after it, which answers
      every 401 as `invalid_token` (against RFC 6750 section 3.1), is a second lock that no request reaches;
    - answers every other method than POST with 405 (`admission.method_not_allowed`): the SDK's stateless
      transport would hold a GET's event stream open, sending nothing, for as long as the client kept it, and
      answered DELETE and the rest with a 405 whose `Allow` was missing or named GET and DELETE;
    - reads a POST's body ahead, whether it declares its length or is sent in chunks (the SDK's transport reads a body
      whole before it parses it, so this costs nothing), and after the transport's Host, Origin and Content-Type checks
      answers one that is not one JSON-RPC message of MCP's with 400 (`admission.message_problem`: JSON-RPC 2.0 section
      5's -32600, with a message naming the problem), and one under an `MCP-Protocol-Version` this server does not speak
      with 400 naming it and those it does (`admission.unsupported_version`). A call that wants one JSON body and passes
      the transport's checks is answered here by the SDK's single-request driver (`ResponseModePerRequest.answer_one`),
      without the Starlette router, middlewares, per-request transport, memory streams and dispatcher task the SDK sets
      up to carry a stream. Anything else goes to the SDK's app with the same body: a stream, `initialize`, a
      notification, a body that is not JSON;
    - owns the connection's receive channel once it has read the body: when the client goes away before its
      answer (it closed the call), the call is cancelled, whichever way it was to be answered; the tool's worker
      stops at its next step. A `notifications/cancelled` naming a call of the same token that this process is
      answering cancels it alike, in this process or another (`apps.mcp_bridge.cancellation`): 2025-era clients
      cancel so and keep the call's connection open;
    - answers an authenticated POST whose body is over the transport's limit (`max_body_bytes`) with 413 and a
      JSON-RPC error naming the limit and MAX_SCORE_BYTES: before reading it when its Content-Length says so,
      and as soon as a body sent in chunks passes the limit.
    """

    def __init__(
        self,
        app: Any,
        manager: ResponseModePerRequest,
        backend: BearerAuthBackend,
        *,
        resource_metadata_url: str,
        cancellations: Cancellations,
    ) -> None:
        self.app = app
        self.manager = manager
        self.backend = backend
        self.resource_metadata_url = resource_metadata_url
        self.max_body = manager.max_request_body_size
        self.cancellations = cancellations

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope["headers"] = _without_surrounding_whitespace(scope["headers"])
        request = Request(scope)  # its headers parsed once, for the token and the transport's checks
        try:
            authenticated = await self.backend.authenticate(request)
        except DatabaseUnavailable as exc:
            await exc.response()(scope, receive, send)
            return
        if authenticated is None:
            await (await self._unauthorised(request))(scope, receive, send)
            return
        scope["auth"], scope["user"] = authenticated
        context = auth_context_var.set(authenticated[1])
        try:
            if scope["method"] != "POST":
                await admission.method_not_allowed(scope["method"])(scope, receive, send)
            elif (declared := _declared_length(scope)) is not None and declared > self.max_body:
                response = await self._too_large(request, f"{declared:,} bytes")
                await response(scope, receive, send)
            else:
                await self._post(request, receive, send)
        finally:
            auth_context_var.reset(context)

    async def _unauthorised(self, request: Request) -> Response:
        presented = request.headers.get("authorization")
        if presented:
            client = request.client
            await in_worker(
                security_event_record,
                kind="auth_failure",
                ip=client.host if client else None,
                endpoint="/mcp",
                reason="bearer token refused (unknown, expired, revoked, disabled client or other resource)",
            )
        bearer = presented is not None and presented.lower().startswith("bearer ")
        return admission.unauthorised(self.resource_metadata_url, token_refused=bearer)

    async def _post(self, request: Request, receive: Any, send: Any) -> None:
        scope = request.scope
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away while sending
                return
            chunks.append(message.get("body", b""))
            received += len(chunks[-1])
            if received > self.max_body:  # sent without a length (chunked), and longer than the limit
                response = await self._too_large(request, f"more than {self.max_body:,} bytes")
                await response(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False
        gone = asyncio.Event()

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        call = anyio.CancelScope()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()
            call.cancel()

        last_sent: dict[str, Any] | None = None  # how far the answer went, when the client's notification cancels it

        async def send_noting(message: dict[str, Any]) -> None:
            nonlocal last_sent
            last_sent = message
            await send(message)

        peeked = _peeked_body.set(body)
        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            with contextlib.ExitStack() as registration, call:
                response = await self._answer_here(request, body, call, registration)
                if response is None:
                    await self.app(scope, replay, send_noting)
                    return
                await response(scope, replay, send_noting)
            if call.cancelled_caught and not gone.is_set():
                # cancelled by the client's notification: the request gets no answer (the MCP specification's
                # "SHOULD NOT respond"); the HTTP exchange ends, as an empty 202 or where its event stream was
                if last_sent is None:
                    await Response(status_code=202)(scope, replay, send)
                elif last_sent["type"] == "http.response.start" or last_sent.get("more_body", False):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            _peeked_body.reset(peeked)

    async def _answer_here(
        self, request: Request, body: bytes, call: anyio.CancelScope, registration: contextlib.ExitStack
    ) -> Response | None:
        """The answer to a POST whose body was read, when this front gives it; None when the SDK's app does. A
        request is registered (under `registration`, for as long as it is answered) as the `call` a later
        `notifications/cancelled` of the same token cancels; such a notification cancels it."""
        refused = await self.manager.security.validate_request(request, is_post=True)
        if refused is not None:  # the SDK's own answer, before anything of the body is believed
            return refused
        try:
            decoded = pydantic_core.from_json(body)
        except ValueError:
            return None  # the transport's parse error (-32700) names it
        problem = admission.message_problem(decoded)
        if problem is not None:
            return problem
        token = request.scope["user"].access_token.token
        if "method" in decoded and "id" in decoded:
            registration.enter_context(self.cancellations.registered(token, decoded["id"], call))
        elif decoded.get("method") == "notifications/cancelled":
            await self.cancellations.cancel(token, (decoded.get("params") or {}).get("requestId"))
        version = request.headers.get(MCP_PROTOCOL_VERSION_HEADER)
        if version is not None and version not in admission.PROTOCOL_VERSIONS:
            return admission.unsupported_version(version, decoded.get("id"))
        message = self.manager.answerable(request, body, decoded)
        return None if message is None else await self.manager.answer_one(message, request)

    async def _too_large(self, request: Request, size: str) -> Response:
        message = (
            f"The request body is {size}, over this server's limit of {self.max_body:,} bytes for /mcp, "
            f"which follows MAX_SCORE_BYTES ({settings.MAX_SCORE_BYTES:,} bytes, the largest score source): three "
            "times it, plus 64 KiB."
        )
        user = request.scope["user"]
        client = request.client
        await in_worker(
            security_event_record,
            kind="hostile_input",
            input_kind="oversize",
            user=getattr(user.access_token, "account", None),
            client_id=user.access_token.client_id,
            ip=client.host if client else None,
            endpoint=request.url.path,
            message=message[:200],
        )
        error = ErrorData(
            code=INVALID_REQUEST,
            message=message,
            data={"max_body_bytes": self.max_body, "setting": "MAX_SCORE_BYTES"},
        )
        reply = JSONRPCError(jsonrpc="2.0", id=None, error=error)  # the body is not read: its id is unknown
        return Response(reply.model_dump_json(by_alias=True), status_code=413, media_type="application/json")


class DatabaseUnavailable(ServiceUnavailable):
    """The database could not be reached to verify a bearer token: 503 with `Retry-After`, never a 401 (the client
    would throw a good token away and authorise again) nor a 500."""

    def __init__(self) -> None:
        super().__init__(
            "The database is unavailable, so the server cannot check your token or serve calls right now; your "
            f"token is still good: retry in {self.RETRY_AFTER} seconds."
        )

    def response(self) -> Response:
        error = ErrorData(code=INTERNAL_ERROR, message=self.message, data={"error": self.code})
        reply = JSONRPCError(jsonrpc="2.0", id=None, error=error)  # the body is not read: its id is unknown
        return Response(
            reply.model_dump_json(by_alias=True),
            status_code=self.http_status,
            headers={"Retry-After": str(self.RETRY_AFTER)},
            media_type="application/json",
        )


def _without_surrounding_whitespace(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Header values without the whitespace around them, which is not part of a field value (RFC 9110 section
    5.5). uvicorn's C parser keeps trailing spaces, and the SDK compares `Mcp-Method` and `Mcp-Name` with the
    request body as they come: `Mcp-Name: list_scores  ` would be refused as a mismatch (SEP-2243)."""
    return [(name, value.strip(b" \t")) for name, value in headers]


def _declared_length(scope: dict[str, Any]) -> int | None:
    length = next((value for name, value in scope.get("headers", []) if name == b"content-length"), None)
    try:
        return None if length is None or int(length) < 0 else int(length)
    except ValueError:
        return None
