"""What a 2025-era client's `notifications/cancelled` stops: the call it names, in whichever serving process
answers that call.

The notification comes in a POST of its own, which the SDK's stateless transport serves in a fresh session that
has no such request, and drops (so does its 2026-07-28 entry, where a client cancels by closing the call's
response). `McpFront` therefore registers every call it answers here, by bearer token and JSON-RPC request id, and
hands every such notification to `Cancellations.cancel`. A call of this process is cancelled at once. With several
worker processes or replicas the notification may reach another process than the call: then, when REDIS_URL is
set, it is published on a Redis channel that every serving process listens to (`Cancellations.listening`, for the
server's whole life), and the process answering the call cancels it. Without Redis (one process, `make run`) there
is no other process to tell.

Keyed by the token (its SHA-256 digest: the token itself never leaves the process), one caller can only cancel its
own calls. A request id that two calls of one token share in one process (two clients of one token) cancels
neither, rather than the wrong one; in two processes, each cancels its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import redis.asyncio
from django.conf import settings
from mcp_types import RequestId
from redis.exceptions import RedisError

from apps.core.redis import RETRY_AFTER_FAILURE, TIMEOUT, outage_for

logger = logging.getLogger(__name__)


def _is_request_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class InFlight:
    """The calls this process is answering, by the digest of their bearer token and their JSON-RPC request id."""

    def __init__(self) -> None:
        self._calls: dict[tuple[str, str, RequestId], list[anyio.CancelScope]] = {}

    @staticmethod
    def _key(digest: str, request_id: RequestId) -> tuple[str, str, RequestId]:
        return (digest, type(request_id).__name__, request_id)  # JSON-RPC ids 1 and "1" differ

    @contextlib.contextmanager
    def registered(self, digest: str, request_id: RequestId, call: anyio.CancelScope) -> Iterator[None]:
        key = self._key(digest, request_id)
        self._calls.setdefault(key, []).append(call)
        try:
            yield
        finally:
            calls = self._calls[key]
            calls.remove(call)
            if not calls:
                del self._calls[key]

    def cancel(self, digest: str, request_id: Any) -> int:
        """Cancel the call of `digest` under `request_id` if it is the only one; how many there are here."""
        if not _is_request_id(request_id):
            return 0
        calls = self._calls.get(self._key(digest, request_id), [])
        if len(calls) == 1:
            calls[0].cancel()
        return len(calls)


class Cancellations:
    """The calls this process answers (`registered`), and the cancellation of one by its token and request id,
    here or, through Redis, in the other serving processes of the deployment."""

    def __init__(self, redis_url: str = "", channel: str = "") -> None:
        self.in_flight = InFlight()
        self.redis_url = redis_url
        self.channel = channel
        self._publisher: redis.asyncio.Redis | None = None

    @classmethod
    def from_settings(cls) -> Cancellations:
        return cls(settings.REDIS_URL, f"{settings.GUARD_NAMESPACE}:mcp:cancelled")

    def registered(
        self, token: str, request_id: RequestId, call: anyio.CancelScope
    ) -> contextlib.AbstractContextManager[None]:
        """While the block runs, `call` (the answering of request `request_id` sent with `token`) can be cancelled."""
        return self.in_flight.registered(token_digest(token), request_id, call)

    async def cancel(self, token: str, request_id: Any) -> None:
        """Cancel the call `request_id` of `token`: here if this process answers it, else in the one that does."""
        digest = token_digest(token)
        if self.in_flight.cancel(digest, request_id) or not self.redis_url or not _is_request_id(request_id):
            return
        outage = outage_for(self.redis_url)
        if outage.skipped():
            return  # Redis is down: no other process can be told (the outage is logged once, where it began)
        if self._publisher is None:
            self._publisher = redis.asyncio.Redis.from_url(
                self.redis_url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT
            )
        try:
            await self._publisher.publish(self.channel, json.dumps({"token": digest, "id": request_id}))
        except (RedisError, OSError) as exc:
            outage.failed(exc)
        else:
            outage.recovered()

    @contextlib.asynccontextmanager
    async def listening(self) -> AsyncIterator[None]:
        """For the block (the server's lifespan): cancel the calls of this process that other processes were asked
        to cancel. Without REDIS_URL, nothing to listen to."""
        if not self.redis_url:
            yield
            return
        subscribed = asyncio.Event()
        listener = asyncio.get_running_loop().create_task(self._listen(subscribed))
        # A moment for the subscription, so that a call answered from the start can be cancelled from elsewhere;
        # a server whose Redis is down starts all the same, and subscribes once Redis is back.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(subscribed.wait(), timeout=2 * TIMEOUT)
        try:
            yield
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            if self._publisher is not None:
                await self._publisher.aclose()

    async def _listen(self, subscribed: asyncio.Event) -> None:
        outage = outage_for(self.redis_url)
        while True:
            # No reply timeout: a subscriber waits for messages as long as none come.
            client = redis.asyncio.Redis.from_url(self.redis_url, socket_connect_timeout=TIMEOUT)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    subscribed.set()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._relayed(message.get("data"))
            except (RedisError, OSError) as exc:
                outage.failed(exc)
            finally:
                await client.aclose()
            await asyncio.sleep(RETRY_AFTER_FAILURE)

    def _relayed(self, data: Any) -> None:
        try:
            asked = json.loads(data)
            digest, request_id = asked["token"], asked["id"]
        except (TypeError, ValueError, KeyError):
            logger.warning("ignored a malformed cancellation on %s", self.channel)
            return
        if isinstance(digest, str):
            self.in_flight.cancel(digest, request_id)
