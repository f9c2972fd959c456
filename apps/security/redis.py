"""The shared Redis connection of the guards (rate limits, breakers), with short timeouts: when Redis is down the
guards must notice within a fraction of a second and fall back to this process's own state, not hang. While it
is down, the client fails at once (apps.core.cache.FailFastRedis), so the breakers' storage, which holds
it, costs a call no wait either; the outage is logged when it starts and when it ends."""

from __future__ import annotations

import functools

from django.conf import settings

from apps.core.cache import FailFastRedis, Outage, fail_fast_redis

# After a failure, do not retry Redis for this long: a down Redis must not cost every call a timeout.
RETRY_AFTER_FAILURE = 5.0


class _GuardsOutage(Outage):
    @property
    def retry_after(self) -> float:
        return RETRY_AFTER_FAILURE  # read at each use: tests shorten it


_outage = _GuardsOutage(
    "Redis",
    consequence="rate limits and breakers fall back to per-process state",
    recovery="rate limits and breakers are shared again",
)


@functools.cache
def _client(url: str) -> FailFastRedis:
    return fail_fast_redis(url, _outage)


def shared_redis() -> FailFastRedis | None:
    """The Redis client, or None when Redis is not configured or was found down in the last few seconds."""
    if not settings.REDIS_URL or _outage.skipped():
        return None
    return _client(settings.REDIS_URL)


def redis_failed(exc: Exception) -> None:
    """Record that Redis failed; guards use local state until it answers again."""
    _outage.failed(exc)


def redis_recovered() -> None:
    _outage.recovered()


def redis_degraded() -> bool:
    """True while the guards run on local state because Redis is configured but unreachable (for readiness)."""
    return bool(settings.REDIS_URL) and _outage.down
