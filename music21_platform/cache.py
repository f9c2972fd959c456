"""Django's Redis cache with one connection pool per process.

Django keeps cache backends per context, not per thread: under ASGI every request, and every worker-thread hop
that copies its context, builds a fresh backend and with it a fresh connection pool, so each cache read paid a TCP
connect and a HELLO (seen with `redis-cli monitor`: two new connections per MCP call). Every instance of this
backend uses the process's one client for its settings; redis-py's pool is thread-safe and starts afresh after
a fork.
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient
from django.utils.functional import cached_property

_clients: dict[tuple[Any, ...], RedisCacheClient] = {}
_lock = threading.Lock()


class RedisCache(DjangoRedisCache):
    @cached_property
    def _cache(self) -> RedisCacheClient:
        key = (tuple(self._servers), repr(sorted(self._options.items())))
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = self._class(self._servers, **self._options)
        return client
