"""The shared Redis connection of the guards (rate limits, breakers), with short timeouts: when Redis is down the
guards must notice within a fraction of a second and fall back to this process's own state, not hang. While it
is down, the client fails at once (apps.core.redis.FailFastRedis), so the breakers' storage, which holds it, costs
a call no wait either. The record of the outage is the one of its server, shared with the cache's client
(apps.core.redis.outage_for): whichever finds Redis down first spares the other its timeout."""

from __future__ import annotations

import functools

from django.conf import settings

from apps.core import redis as core_redis
from apps.core.redis import FailFastRedis, fail_fast_redis, outage_for

# After a failure, the guards do not ask Redis again for this long (read at each use: tests shorten it).
RETRY_AFTER_FAILURE = core_redis.RETRY_AFTER_FAILURE


def _retry_after() -> float:
    return RETRY_AFTER_FAILURE


@functools.cache
def _client(url: str) -> FailFastRedis:
    return fail_fast_redis(url, retry_after=_retry_after)


def shared_redis() -> FailFastRedis | None:
    """The Redis client, or None when Redis is not configured or was found down in the last few seconds."""
    if not settings.REDIS_URL or outage_for(settings.REDIS_URL).skipped(RETRY_AFTER_FAILURE):
        return None
    return _client(settings.REDIS_URL)


def redis_failed(exc: Exception) -> None:
    """Record that Redis failed; guards use local state until it answers again."""
    if settings.REDIS_URL:
        outage_for(settings.REDIS_URL).failed(exc)


def redis_recovered() -> None:
    if settings.REDIS_URL:
        outage_for(settings.REDIS_URL).recovered()


def redis_degraded() -> bool:
    """True while the guards run on local state because Redis is configured but unreachable (for readiness)."""
    return bool(settings.REDIS_URL) and outage_for(settings.REDIS_URL).down
