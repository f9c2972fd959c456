"""The shared Redis connection of the guards (rate limits, breakers), with short timeouts: when Redis is down the
guards must notice within a fraction of a second and fall back to this process's own state, not hang."""

from __future__ import annotations

import functools
import logging
import time

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

SOCKET_TIMEOUT = 0.25
# After a failure, do not retry Redis for this long: a down Redis must not cost every call a timeout.
RETRY_AFTER_FAILURE = 5.0
_down_since: list[float] = []


@functools.cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT)


def shared_redis() -> redis.Redis | None:
    """The Redis client, or None when Redis is not configured or was found down in the last few seconds."""
    if not settings.REDIS_URL:
        return None
    if _down_since and time.monotonic() - _down_since[-1] < RETRY_AFTER_FAILURE:
        return None
    return _client(settings.REDIS_URL)


def redis_failed(exc: Exception) -> None:
    """Record that Redis failed; guards use local state until it answers again."""
    if not _down_since:
        logger.error("Redis is unreachable (%s): rate limits and breakers fall back to per-process state", exc)
    _down_since[:] = [time.monotonic()]


def redis_recovered() -> None:
    if _down_since:
        logger.warning("Redis is reachable again: rate limits and breakers are shared again")
    _down_since.clear()


def redis_degraded() -> bool:
    """True while the guards run on local state because Redis is configured but unreachable (for readiness)."""
    return bool(settings.REDIS_URL) and bool(_down_since)
