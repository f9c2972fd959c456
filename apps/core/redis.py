"""Redis clients that cost a call little when Redis is down, and one record per server of it being down.

Every Redis client of the product waits at most TIMEOUT to connect and for each reply: a frozen Redis (stopped,
not crashed, so the kernel still accepts connections) otherwise holds every call for redis-py's default of 5 s
per command, and a call makes several. Once a client has found a server down, no client of that server (the
cache's, apps.core.cache; the guards', apps.security.redis) asks it again for RETRY_AFTER_FAILURE: the first call
of an outage pays one timeout, not one per client, and the outage is logged once, when it starts and when it ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

TIMEOUT = 0.25  # seconds to connect to Redis, and to wait for each reply
RETRY_AFTER_FAILURE = 5.0  # seconds during which a Redis that failed is not asked again


class Outage:
    """What this process knows of a Redis server being down: when it last failed. While that is less than
    RETRY_AFTER_FAILURE ago, its clients fail at once instead of each waiting TIMEOUT; the first command after that
    tries the server again. Shared by every client of the server (`outage_for`)."""

    def __init__(self, server: str) -> None:
        self.what = f"Redis at {server}"
        self.failed_at: float | None = None
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        """True from a failure until the next success."""
        return self.failed_at is not None

    def skipped(self, retry_after: float | None = None) -> bool:
        """True while the server failed too recently (`retry_after`, else RETRY_AFTER_FAILURE) to be asked again."""
        failed_at = self.failed_at
        wait = RETRY_AFTER_FAILURE if retry_after is None else retry_after
        return failed_at is not None and time.monotonic() - failed_at < wait

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            started, self.failed_at = self.failed_at is None, time.monotonic()
        if started:
            logger.error(
                "%s is unreachable (%s): cache reads miss and writes are dropped, the block list is read from the "
                "database, rate limits and breakers fall back to per-process state",
                self.what,
                exc,
            )

    def recovered(self) -> None:
        if self.failed_at is None:
            return
        with self._lock:
            ended, self.failed_at = self.failed_at is not None, None
        if ended:
            logger.warning("%s is reachable again: the cache, rate limits and breakers are shared again", self.what)


_lock = threading.Lock()
_outages: dict[str, Outage] = {}


def _server(url: str) -> str:
    """The server a URL names, without its credentials or database: a frozen server is down for every database."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname}:{parts.port or 6379}"


def outage_for(url: str) -> Outage:
    """The outage record of the Redis server at `url` (one per process and server, whichever client uses it)."""
    server = _server(url)
    with _lock:
        outage = _outages.get(server)
        if outage is None:
            outage = _outages[server] = Outage(server)
        return outage


def outages_forget() -> None:
    """Forget that any Redis server failed (tests): its clients ask it again at once."""
    with _lock:
        for outage in _outages.values():
            outage.failed_at = None


class FailFastRedis(redis.Redis):
    """A redis-py client that reports its server's failures to the server's `Outage` and, while the outage says
    so, fails at once with redis-py's ConnectionError (a RedisError, which every caller handles) instead of waiting
    again. `retry_after`, if given, says for how long this client leaves a failed server alone."""

    def __init__(
        self, *args: Any, outage: Outage, retry_after: Callable[[], float] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.outage = outage
        self.retry_after = retry_after

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self._refuse_during_outage()
        try:
            result = super().execute_command(*args, **options)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            self.outage.failed(exc)
            raise
        self.outage.recovered()
        return result

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        self._refuse_during_outage()
        return super().pipeline(*args, **kwargs)

    def _refuse_during_outage(self) -> None:
        if self.outage.skipped(None if self.retry_after is None else self.retry_after()):
            raise RedisConnectionError(f"{self.outage.what} failed moments ago; not asked again yet")


def fail_fast_redis(url: str, *, retry_after: Callable[[], float] | None = None) -> FailFastRedis:
    """A client of `url` with the product's timeouts, bound to its server's outage record."""
    pool = redis.ConnectionPool.from_url(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    return FailFastRedis(connection_pool=pool, outage=outage_for(url), retry_after=retry_after)
