"""A frozen Redis costs the first call of an outage one timeout, not one per client: the cache's client and the
guards' client of the same server share one record of it being down (apps.core.redis.outage_for).

Each test starts its own redis-server on a free port (as tests/test_faults_redis.py does) and freezes it with
SIGSTOP, so the kernel still accepts connections and only a timeout tells that it is gone."""

from __future__ import annotations

import logging
import shutil
from typing import Any

import pytest
from django.core.cache import caches
from redis.exceptions import RedisError

from apps.core.redis import outage_for
from apps.security.redis import redis_degraded, shared_redis
from tests.support import OwnRedis

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server program")


class CountedConnections:
    """Counts the connections a redis-py pool hands out: each is a question about to be put to the server."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, pool: Any) -> None:
        self.count = 0
        taken = pool.get_connection

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return taken(*args, **kwargs)

        monkeypatch.setattr(pool, "get_connection", counted)


def _cache_client() -> Any:
    return caches["default"]._cache.get_client(write=True)


def test_once_the_guards_found_redis_frozen_the_cache_does_not_ask_it(
    own_redis: OwnRedis, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caches["default"].set("greeting", "hello")
    guards = shared_redis()
    assert guards is not None and guards.ping()  # both clients connected while Redis answered
    asked = CountedConnections(monkeypatch, _cache_client().connection_pool)

    own_redis.freeze()
    try:
        with caplog.at_level(logging.WARNING), pytest.raises(RedisError):
            guards.get("anything")  # the one timeout of this outage
        with pytest.raises(RedisError):
            caches["default"].get("greeting")
    finally:
        own_redis.thaw()

    assert asked.count == 0  # refused without a question to the frozen server
    assert outage_for(own_redis.url).skipped()
    assert redis_degraded()
    unreachable = [record.getMessage() for record in caplog.records if "unreachable" in record.getMessage()]
    assert len(unreachable) == 1, unreachable  # one outage, logged once, naming what both clients lose
    assert "cache" in unreachable[0] and "rate limits" in unreachable[0]


def test_once_the_cache_found_redis_frozen_the_guards_fall_back_at_once(
    own_redis: OwnRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    guards = shared_redis()
    assert guards is not None and guards.ping()
    caches["default"].set("greeting", "hello")
    asked = CountedConnections(monkeypatch, guards.connection_pool)

    own_redis.freeze()
    try:
        with pytest.raises(RedisError):
            caches["default"].get("greeting")  # the one timeout of this outage
        assert shared_redis() is None  # the guards use this process's own state without asking
        with pytest.raises(RedisError):
            guards.get("anything")  # a client held from before the outage refuses too
    finally:
        own_redis.thaw()
    assert asked.count == 0


def test_when_redis_answers_again_both_clients_use_it(own_redis: OwnRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    caches["default"].set("greeting", "hello")
    own_redis.freeze()
    try:
        with pytest.raises(RedisError):
            caches["default"].get("greeting")
    finally:
        own_redis.thaw()
    monkeypatch.setattr("apps.core.redis.RETRY_AFTER_FAILURE", 0.0)  # ask again at once
    monkeypatch.setattr("apps.security.redis.RETRY_AFTER_FAILURE", 0.0)
    guards = shared_redis()
    assert guards is not None and guards.ping()
    assert not redis_degraded()
    assert caches["default"].get("greeting") == "hello"
