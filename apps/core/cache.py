"""Django's Redis cache with one connection pool, and one redis-py client on it, per process.

Django keeps cache backends per context, not per thread: under ASGI every request, and every worker-thread hop
that copies its context, builds a fresh backend and with it a fresh connection pool, so each cache read paid a TCP
connect and a HELLO (seen with `redis-cli monitor`: two new connections per MCP call). Every instance of this
backend uses the process's one client for its settings; redis-py's pool is thread-safe and starts afresh after
a fork.

Django's client also builds a new `redis.Redis` around the pool for every operation, and redis-py 8 fills a table
of some 170 response callbacks in each: 55 us per cache read, about as long as the round trip to Redis itself. The
client below keeps one `redis.Redis` per pool (it is thread-safe: each command takes a connection from the pool).

Every Redis client of the product (this cache, the guards', the subscriptions below, the asynchronous one) waits
at most apps.core.redis.TIMEOUT to connect and for each reply, and the cache's client shares the record of its
server being down with the guards' client of the same server (apps.core.redis.outage_for): after either has
found it down, neither asks it again for a while.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import re
import select
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import redis.asyncio
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient
from django.utils.functional import cached_property
from redis.exceptions import RedisError

from apps.core.redis import TIMEOUT, FailFastRedis, outage_for

logger = logging.getLogger(__name__)

_lock = threading.Lock()


# --- One client per process ---------------------------------------------------------------------------------------

_clients: dict[tuple[Any, ...], RedisCacheClient] = {}


# Measured (2026-12, this 2-core machine, median of 5,000 interleaved calls): a request's own backend and one
# get_many (the block list, the one cache read of an MCP call) cost ~1.1-1.2 ms with Django's stock RedisCache (a
# new connection per request context) and ~0.15 ms with this one, so it pays well over the 0.5 ms bar. Django has
# no public way to share a client between backends or to choose the redis.Redis class its client builds, so this
# relies on RedisCache._cache and on RedisCacheClient's _get_connection_pool, _pools and _servers;
# tests/test_cache.py pins them, and fails if a Django upgrade changes them.
class _OneClientPerPool(RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._redis_by_pool: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        pool = self._get_connection_pool(write)
        client = self._redis_by_pool.get(id(pool))
        if client is None:
            server = next(self._servers[index] for index, each in self._pools.items() if each is pool)
            outage = outage_for(server)
            with _lock:
                client = self._redis_by_pool.setdefault(id(pool), FailFastRedis(connection_pool=pool, outage=outage))
        return client


class RedisCache(DjangoRedisCache):
    def __init__(self, server: str | list[str], params: dict[str, Any]) -> None:
        super().__init__(server, params)
        # Read from the constructor's (public) arguments, as Django reads them: the servers, the first of which
        # takes the writes, and the OPTIONS.
        self.servers: list[str] = re.split("[;,]", server) if isinstance(server, str) else list(server)
        self.options: dict[str, Any] = params.get("OPTIONS", {})

    @property
    def first_server(self) -> str:
        """The URL of the server that takes the writes."""
        return self.servers[0]

    @cached_property
    def _cache(self) -> RedisCacheClient:
        # The product's timeouts unless CACHES' OPTIONS name others (settings.py names them).
        options = {"socket_connect_timeout": TIMEOUT, "socket_timeout": TIMEOUT, **self.options}
        key = (tuple(self.servers), repr(sorted(options.items())))
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = _OneClientPerPool(self.servers, **options)
        return client


# Asynchronous clients for reads the event loop makes itself (the token epoch on every MCP request, see
# apps.security.services.token_epoch_async): one per event loop, as an asyncio connection belongs to its loop.
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.asyncio.Redis] = weakref.WeakKeyDictionary()


def async_redis(backend: RedisCache) -> redis.asyncio.Redis:
    """An asyncio client of the cache's (first) Redis server, for the running event loop."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = _async_clients[loop] = redis.asyncio.Redis.from_url(
            backend.first_server, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT
        )
    return client


# --- Memory of this process ----------------------------------------------------------------------------------------
# The one per-process memory mechanism (docs/caching.md): parsed scores (apps.tools.services.cache) and verified
# tokens (apps.security.services). Its one invalidation rule: a key carries the version of what it stands for (a
# score's content hash, the token epoch), so a change makes old entries unreachable and they age out.


@dataclass
class MemoryStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0


class Memory:
    """A thread-safe least-recently-used memory of at most `capacity` entries, each trusted for at most `max_age`
    seconds (None: until evicted). Keys must carry the version of what they stand for (docs/caching.md)."""

    def __init__(self, capacity: int, *, max_age: float | None = None) -> None:
        self._capacity = capacity
        self.max_age = max_age
        self.stats = MemoryStats()
        self._entries: OrderedDict[Hashable, tuple[Any, float]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        return self._capacity

    def get(self, key: Hashable, *, counted: bool = True) -> Any | None:
        """The value remembered under `key`, or None (a miss). `counted=False`: a look that is not a use of the
        memory in its own right (whether something is held), left out of the hit and miss counts."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and self.max_age is not None and time.monotonic() - entry[1] >= self.max_age:
                del self._entries[key]
                entry = None
            if entry is None:
                if counted:
                    self.stats.misses += 1
                return None
            self._entries.move_to_end(key)
            if counted:
                self.stats.hits += 1
            return entry[0]

    def put(self, key: Hashable, value: Any) -> int:
        """Remember `value` (None is not remembered) under `key`; returns how many entries this evicted."""
        capacity = self.capacity
        if value is None or capacity <= 0:
            return 0
        with self._lock:
            self._entries[key] = (value, time.monotonic())
            self._entries.move_to_end(key)
            evicted = 0
            while len(self._entries) > capacity:
                self._entries.popitem(last=False)
                evicted += 1
            self.stats.evictions += evicted
        return evicted

    def forget(self, predicate: Callable[[Any], bool] | None = None) -> None:
        """Forget every entry, or those whose key `predicate` is true of."""
        with self._lock:
            if predicate is None:
                self._entries.clear()
            else:
                for key in [key for key in self._entries if predicate(key)]:
                    del self._entries[key]

    def keys(self) -> list[Any]:
        """The keys remembered now, least recently used first (a copy)."""
        with self._lock:
            return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries


# --- Values pushed to every process -------------------------------------------------------------------------------
# A small integer that every process must see change at once (the token epoch, apps.security.services) is written
# with `publish` and read with `pushed(...).current()`: a thread of each reading process is subscribed to its
# changes and keeps it in memory, so reading it costs no round trip to Redis.

_PUBLISH_SCRIPT = """
if ARGV[2] == '1' then
  if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then return redis.call('GET', KEYS[1]) end
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return ARGV[1]
"""
QUIET_SECONDS = 5.0  # a subscription silent this long is asked for a PING; one silent twice as long is dropped
_pushed: dict[tuple[str, str], PushedValue] = {}


def publish(backend: RedisCache, key: str, value: int, *, only_if_absent: bool = False) -> int:
    """Set the cache's `key` to `value` and tell every subscribed process, in one atomic round trip; with
    `only_if_absent`, only if the key holds nothing yet. Returns the value the key holds. Raises RedisError.
    Stored as Django stores an int (its digits), so `cache.get(key)` reads it too."""
    full_key = backend.make_and_validate_key(key)
    client = backend._cache.get_client(write=True)
    held = int(client.eval(_PUBLISH_SCRIPT, 1, full_key, value, int(only_if_absent)))
    watch = _pushed.get((backend.first_server, full_key))
    if watch is not None and watch.pid == os.getpid() and held == value:  # not one a forked child inherited
        watch.wait_for(value)
    return held


def pushed(backend: RedisCache, key: str) -> PushedValue:
    """This process's subscription to `key` (started on first use)."""
    full_key = backend.make_and_validate_key(key)
    with _lock:
        watch = _pushed.get((backend.first_server, full_key))
        if watch is None or watch.pid != os.getpid():  # a forked child does not inherit the thread
            watch = _pushed[(backend.first_server, full_key)] = PushedValue(backend.first_server, full_key)
        return watch


class PushedValue:
    """An integer held in Redis, kept in this process's memory by a thread subscribed to its changes.

    `current()` vouches for a value only when nothing about it can be on its way: it answers None (then read Redis
    yourself) before the subscription is up, after it is lost, and while a change has reached this process but is
    not read yet (bytes waiting on the subscription's socket, or being read). Redis writes a published change to
    every subscriber's socket in the same pass as its answer to the publisher, so once `publish` has returned in
    any process of this machine, no `current()` here answers the value it replaced."""

    def __init__(self, url: str, key: str) -> None:
        self.pid = os.getpid()
        self.key = key
        # The subscription's socket is read only once it is readable (polled), so a short timeout cuts off
        # nothing but a server that stopped in the middle of a reply.
        self._client = redis.Redis.from_url(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
        self._lock = threading.Lock()  # held while the subscription is read, and while `current()` looks at it
        self._heard = threading.Condition(self._lock)
        self._value: int | None = None
        self._unread: select.poll | None = None  # `current()`'s own look at the subscription's socket
        self._heard_at = 0.0
        self._recent: collections.deque[int] = collections.deque(maxlen=64)  # the values messages brought
        threading.Thread(target=self._run, name=f"pushed {key}", daemon=True).start()

    def current(self) -> int | None:
        if not self._lock.acquire(blocking=False):
            return None  # the thread is reading the subscription: a change may be arriving
        try:
            if self._unread is None or self._value is None:
                return None
            if time.monotonic() - self._heard_at > 3 * QUIET_SECONDS or self._unread.poll(0):
                return None  # the subscription has gone quiet, or holds a message not read yet
            return self._value
        finally:
            self._lock.release()

    def wait_for(self, value: int) -> None:
        """Return once the subscription has brought `value`, which this process has just published (it is on its
        way: Redis wrote it before answering the publisher). If it does not come within a second, the
        subscription is dropped and started afresh, and nothing is vouched for meanwhile."""
        with self._heard:
            if self._unread is not None and not self._heard.wait_for(lambda: value in self._recent, timeout=1.0):
                self._unread = None

    def _run(self) -> None:
        delay, told = 0.1, False
        while True:
            pubsub = self._client.pubsub()
            try:
                self._listen(pubsub)
            except (RedisError, OSError, ValueError) as exc:
                if self._unread is not None:  # it was up: a new outage
                    delay, told = 0.1, False
                if not told:
                    logger.warning("no subscription to %s (%s); it is read from Redis meanwhile", self.key, exc)
                    told = True
            finally:
                with self._lock:
                    self._unread = None
                with contextlib.suppress(RedisError, OSError):
                    pubsub.close()
            time.sleep(delay)
            delay = min(delay * 2, QUIET_SECONDS)

    def _listen(self, pubsub: Any) -> None:
        pubsub.subscribe(self.key)
        confirmed = pubsub.get_message(timeout=QUIET_SECONDS)
        if not confirmed or confirmed["type"] != "subscribe":
            raise ConnectionError(f"no confirmation of the subscription ({confirmed!r})")
        # Read after subscribing: a change made after this read comes as a message, one made before is read here.
        value = self._client.get(self.key)
        poller, unread = select.poll(), select.poll()  # one poll object cannot be polled from two threads at once
        # The socket is redis-py's private Connection._sock (tests/test_cache.py pins it): `current()` must see,
        # from another thread and without reading, whether a message waits; redis-py's public `can_read` reads
        # from the socket into its buffer, which two threads may not do at once.
        for each in (poller, unread):
            each.register(pubsub.connection._sock, select.POLLIN)
        with self._lock:
            # None (nothing vouched for) until the key holds an int: whoever sets it first publishes it too.
            self._value = int(value) if value is not None and value.isdigit() else None
            self._unread, self._heard_at = unread, time.monotonic()
        pinged = False
        while True:
            if self._unread is None:  # dropped by `wait_for`
                raise ConnectionError("a change published here did not come back")
            if not poller.poll(QUIET_SECONDS * 1000):
                if pinged:
                    raise ConnectionError(f"no answer to a PING within {QUIET_SECONDS:g} s")
                pubsub.ping()
                pinged = True
                continue
            with self._heard:
                while (message := pubsub.get_message(timeout=0.0)) is not None:
                    if message["type"] == "message":
                        self._value = int(message["data"])
                        self._recent.append(self._value)
                    self._heard_at = time.monotonic()
                    pinged = False
                self._heard.notify_all()
