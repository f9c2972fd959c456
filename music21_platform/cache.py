"""Django's Redis cache with one connection pool, and one redis-py client on it, per process.

Django keeps cache backends per context, not per thread: under ASGI every request, and every worker-thread hop
that copies its context, builds a fresh backend and with it a fresh connection pool, so each cache read paid a TCP
connect and a HELLO (seen with `redis-cli monitor`: two new connections per MCP call). Every instance of this
backend uses the process's one client for its settings; redis-py's pool is thread-safe and starts afresh after
a fork.

Django's client also builds a new `redis.Redis` around the pool for every operation, and redis-py 8 fills a table
of some 170 response callbacks in each: 55 us per cache read, about as long as the round trip to Redis itself. The
client below keeps one `redis.Redis` per pool (it is thread-safe: each command takes a connection from the pool).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Any

import redis.asyncio
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient
from django.utils.functional import cached_property

_clients: dict[tuple[Any, ...], RedisCacheClient] = {}
_lock = threading.Lock()


class _OneClientPerPool(RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._redis_by_pool: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        pool = self._get_connection_pool(write)
        client = self._redis_by_pool.get(id(pool))
        if client is None:
            with _lock:
                client = self._redis_by_pool.setdefault(id(pool), self._client(connection_pool=pool))
        return client


class RedisCache(DjangoRedisCache):
    @cached_property
    def _cache(self) -> RedisCacheClient:
        key = (tuple(self._servers), repr(sorted(self._options.items())))
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = _OneClientPerPool(self._servers, **self._options)
        return client


# Asynchronous clients for reads the event loop makes itself (the token epoch on every MCP request, see
# apps.security.services.token_epoch_async): one per event loop, as an asyncio connection belongs to its loop.
ASYNC_TIMEOUT = 0.25  # seconds; past it the caller falls back to its worker-thread path
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.asyncio.Redis] = weakref.WeakKeyDictionary()


def async_redis(backend: RedisCache) -> redis.asyncio.Redis:
    """An asyncio client of the cache's (first) Redis server, for the running event loop."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = _async_clients[loop] = redis.asyncio.Redis.from_url(
            backend._servers[0], socket_timeout=ASYNC_TIMEOUT, socket_connect_timeout=ASYNC_TIMEOUT
        )
    return client
