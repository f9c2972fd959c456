"""The per-process memory (docs/caching.md) and the Redis cache backend's one client per process."""

from __future__ import annotations

import contextvars
import threading
from typing import Any

from apps.core.cache import Memory, RedisCache


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


def test_the_memory_forgets_the_least_recently_used_first_and_counts_what_it_did() -> None:
    memory = Memory(2)
    memory.put("a", 1)
    memory.put("b", 2)
    assert memory.get("a") == 1  # now the most recently used
    assert memory.put("c", 3) == 1
    assert memory.keys() == ["a", "c"]
    assert memory.get("b") is None
    assert (memory.stats.hits, memory.stats.misses, memory.stats.evictions) == (1, 1, 1)


def test_a_remembered_value_is_trusted_only_for_its_maximum_age(monkeypatch: Any) -> None:
    from apps.core import cache as cache_module

    now = [1000.0]
    monkeypatch.setattr(cache_module.time, "monotonic", lambda: now[0])
    memory = Memory(10, max_age=10.0)
    memory.put("token", "grant")
    now[0] += 9.9
    assert memory.get("token") == "grant"
    now[0] += 0.1
    assert memory.get("token") is None
    assert "token" not in memory


def test_forgetting_drops_only_what_the_predicate_names() -> None:
    memory = Memory(10)
    for pk in range(4):
        memory.put((pk, "hash"), object())
    memory.forget(lambda key: key[0] % 2 == 0)
    assert sorted(memory.keys()) == [(1, "hash"), (3, "hash")]
    memory.forget()
    assert len(memory) == 0


def test_the_token_memory_is_bounded_and_keeps_the_busy_tokens(monkeypatch: Any) -> None:
    from apps.security import services

    monkeypatch.setattr(services, "_verified", Memory(3, max_age=services.TOKEN_CACHE_SECONDS))
    for n in range(5):
        services.remember(services._verified, (f"checksum{n}", "r"), f"grant{n}", 7)
        assert services.recall(services._verified, ("checksum0", "r"), 7) == "grant0"  # busy: never evicted
    assert len(services._verified) == 3
    assert services.recall(services._verified, ("checksum0", "r"), 8) is None  # another epoch: unreachable
    assert services.recall(services._verified, ("checksum0", "r"), None) is None  # no epoch: nothing trusted


def test_the_private_details_of_django_and_redis_py_the_cache_relies_on_are_still_there(monkeypatch: Any) -> None:
    # apps.core.cache overrides Django's RedisCache._cache and reads RedisCacheClient's _get_connection_pool, _pools
    # and _servers (no public way to share one client between backends, measured to save ~1 ms per MCP call), and
    # PushedValue polls redis-py's Connection._sock (its public can_read reads from the socket). If an upgrade
    # changes any of them, this fails, not production.
    import inspect

    import redis
    from django.core.cache.backends.redis import RedisCache as StockRedisCache
    from django.core.cache.backends.redis import RedisCacheClient
    from django.utils.functional import cached_property

    from apps.core import cache as cache_module
    from apps.core.redis import FailFastRedis

    assert isinstance(StockRedisCache.__dict__["_cache"], cached_property)
    client = RedisCacheClient(["redis://127.0.0.1:6379/9", "redis://127.0.0.1:6379/8"])
    pool = client._get_connection_pool(True)
    assert client._pools[0] is pool and client._servers[0] == "redis://127.0.0.1:6379/9"

    backend = RedisCache("redis://127.0.0.1:6379/9;redis://127.0.0.1:6379/8", {"OPTIONS": {}})
    assert backend.first_server == "redis://127.0.0.1:6379/9"
    assert isinstance(backend._cache.get_client(write=True), FailFastRedis)

    class Asked(Exception):
        pass

    def asked(*args: Any, **kwargs: Any) -> Any:
        raise Asked

    monkeypatch.setattr(cache_module._OneClientPerPool, "get_client", asked)
    for operation in (lambda: backend.get("k"), lambda: backend.get_many(["k"]), lambda: backend.set("k", 1)):
        try:
            operation()
        except Asked:
            continue
        raise AssertionError("a cache operation did not go through the backend's _cache.get_client")

    connection = redis.connection.Connection()
    assert connection._sock is None  # connected lazily; PushedValue registers it once subscribed
    assert "self._sock = sock" in inspect.getsource(type(connection).connect_check_health)
