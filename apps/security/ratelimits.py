"""Rate limits: a token bucket per (guard group, user), whoever's client the calls come through.

A user is limited as themselves, and nobody else draws from their bucket: not the other users of the same OAuth
client (a client registered once for a whole product, or named by a metadata document, serves everyone who uses
that product), nor anyone naming their client.

Hand-written because the libraries at hand count fixed windows (django-ratelimit), which cannot express
"RATE_LIMIT_PER_MINUTE sustained with bursts of RATE_LIMIT_BURST". With Redis the buckets are updated atomically by
one small script, so every process and replica draws from the same bucket; without it (or while it is down, see
apps.security.redis) each process keeps its own.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError

from apps.security.groups import GROUPS
from apps.security.redis import redis_failed, redis_recovered, shared_redis

# Takes a token from the bucket KEYS[1]; answers 0 when it had one, else the seconds until it has one again. A
# refused call is not charged: only the refill is recorded.
_TAKE_SCRIPT = """
local capacity, rate, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 60)
return tostring(wait)
"""

_local_buckets: dict[str, tuple[float, float]] = {}
_local_lock = threading.Lock()
_scripts: dict[int, Any] = {}


def bucket_of(*, group: str, user_id: Any) -> str:
    """The bucket a call draws from: its user's for the tool's group."""
    return f"{group}:user:{user_id}"


def token_take(bucket: str) -> float:
    """Take a token from `bucket`: 0 when it had one, else the seconds until it has one again."""
    capacity = float(max(1, settings.RATE_LIMIT_BURST))
    rate = settings.RATE_LIMIT_PER_MINUTE / 60.0
    now = time.time()
    client = shared_redis()
    if client is not None:
        try:
            script = _scripts.get(id(client)) or _scripts.setdefault(id(client), client.register_script(_TAKE_SCRIPT))
            wait = float(script(keys=[_redis_key(bucket)], args=[capacity, rate, now]))
        except RedisError as exc:
            redis_failed(exc)
        else:
            redis_recovered()
            return wait
    return _take_local(bucket, capacity, rate, now)


def _take_local(key: str, capacity: float, rate: float, now: float) -> float:
    with _local_lock:
        tokens, at = _local_buckets.get(key, (capacity, now))
        tokens = min(capacity, tokens + max(0.0, now - at) * rate)
        if tokens >= 1:
            _local_buckets[key] = (tokens - 1, now)
            return 0.0
        _local_buckets[key] = (tokens, now)
        return (1 - tokens) / rate


def _redis_key(bucket: str) -> str:
    return f"{settings.GUARD_NAMESPACE}:rl:{bucket}"


def rate_limits_forget(*, user_id: Any) -> None:
    """Drop a user's buckets everywhere (erasure): their id must not linger in Redis."""
    keys = [bucket_of(group=group, user_id=user_id) for group in GROUPS]
    with _local_lock:
        for key in keys:
            _local_buckets.pop(key, None)
    client = shared_redis()
    if client is not None:
        try:
            client.delete(*[_redis_key(key) for key in keys])
        except RedisError as exc:
            redis_failed(exc)


def rate_limits_reset() -> None:
    """Forget this process's fallback buckets (tests, or an administrator lifting limits)."""
    with _local_lock:
        _local_buckets.clear()
