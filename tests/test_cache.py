"""The Redis cache backend keeps one client (one connection pool) per process."""

from __future__ import annotations

import contextvars
import threading

from apps.core.cache import RedisCache


def test_every_request_context_shares_the_process_redis_client() -> None:
    # Django builds a backend per request context under ASGI; each must reuse the one pool, not open its own.
    # No Redis needed: clients connect lazily.
    params = {"OPTIONS": {}, "KEY_PREFIX": "m21"}
    clients = []

    def backend_client() -> None:
        clients.append(RedisCache("redis://127.0.0.1:6379/9", params)._cache)

    contextvars.copy_context().run(backend_client)
    contextvars.copy_context().run(backend_client)
    thread = threading.Thread(target=backend_client)
    thread.start()
    thread.join()
    assert clients[0] is clients[1] is clients[2]
    other = RedisCache("redis://127.0.0.1:6379/10", params)._cache
    assert other is not clients[0]  # another server or database gets its own
