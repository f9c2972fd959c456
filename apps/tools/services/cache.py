"""The in-process memory of parsed scores (docs/caching.md).

Parsed music21 streams are large object graphs that do not survive pickling cheaply or safely, so they are never put
in the database or a shared cache: each process keeps its own `apps.core.cache.Memory`, bounded by
MAX_SCORES_IN_MEMORY, keyed by the score's primary key and content hash (an edited source never hits a stale entry).
Callers must treat the streams they get back as read-only: other threads may be reading the same object.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time

from django.conf import settings
from music21 import stream
from redis.exceptions import RedisError

from apps.core.cache import Memory, MemoryStats
from apps.core.runtime import collect_everything, keep_out_of_sight
from apps.security.redis import redis_degraded, redis_failed, shared_redis

logger = logging.getLogger(__name__)

# Other processes learn of scores to drop (erasure) through a purge log that each process reads at most once per
# PURGE_CHECK_SECONDS, on its next cache lookup, from where it last stopped. With Redis the log is a stream
# (appends are atomic and ordered, so two erasures in two processes at once both arrive); without Redis there is
# one process, and the log is a list in it.
PURGE_CHECK_SECONDS = 1.0
PURGE_HISTORY = 200

CacheKey = tuple[int, str]

# A parsed score is one large reference cycle (notes, their durations, sites and groups point at each other), so
# an evicted one is freed only by a full collection of the garbage collector. Kept scores are out of the
# collector's sight (apps.core.runtime.keep_out_of_sight), so that its own full collections do not walk them
# over and over; the dropped ones are therefore freed by a full collection that sees everything, which the cache
# runs once a tenth of its capacity has been evicted (see docs/performance.md, memory). It walks every cached
# score, so it runs once per capacity/10 evictions, not after each.
GARBAGE_SHARE = 10


CacheStats = MemoryStats


class ParsedScoreCache(Memory):
    """The `Memory` of parsed scores: its bound follows the settings, lookups first apply other processes'
    purges, and evictions are followed by a full garbage collection now and then (GARBAGE_SHARE)."""

    def __init__(self, capacity: int | None = None) -> None:
        super().__init__(capacity or 0)
        self._fixed_capacity = capacity
        self._purge_checked = 0.0
        self._purge_position: str | None = None  # None: not read yet (the first read applies the whole log)
        self._uncollected = 0  # evicted since the last collection
        self._collect_lock = threading.Lock()

    @property
    def capacity(self) -> int:
        if not settings.ENABLE_CACHING:
            return 0
        return self._fixed_capacity if self._fixed_capacity is not None else settings.MAX_SCORES_IN_MEMORY

    def get(self, key: CacheKey, *, counted: bool = True) -> stream.Score | None:  # type: ignore[override]
        self._purges_apply()
        return super().get(key, counted=counted)

    def put(self, key: CacheKey, score: stream.Score) -> int:  # type: ignore[override]
        evicted = super().put(key, score)
        if key in self:
            keep_out_of_sight()  # once the call is answered (apps.core.runtime)
        if not evicted:
            return 0
        with self._collect_lock:
            self._uncollected += evicted
            collect = self._uncollected >= max(1, self.capacity // GARBAGE_SHARE)
            if collect:
                self._uncollected = 0
        if collect:
            collect_everything()  # the dropped scores are out of the collector's sight with the kept ones
        return evicted

    def discard_score(self, pk: int) -> None:
        """Drop every cached version of one score (after delete or erasure)."""
        self.forget(lambda key: key[0] == pk)

    def holds_score(self, pk: int) -> bool:
        """Whether some version of this score is in memory."""
        return any(key[0] == pk for key in self.keys())

    def _purges_apply(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._purge_checked < PURGE_CHECK_SECONDS:
            return
        self._purge_checked = now
        found = _purges_since(self._purge_position)
        if found is None:  # the log cannot be read: purges wait for it
            return
        pks, self._purge_position = found
        if pks:
            erased = set(pks)
            self.forget(lambda key: key[0] in erased)

    def clear(self) -> None:
        self.forget()


parsed_scores = ParsedScoreCache()


def parsed_scores_purge(pks: list[int]) -> None:
    """Drop these scores from the parsed-score cache of this process now, and of every other process within
    about a second (erasure)."""
    for pk in pks:
        parsed_scores.discard_score(pk)
    if not pks:
        return
    client = shared_redis()
    if client is None:
        if settings.REDIS_URL:
            logger.error("Redis is down: other processes cannot be told to drop %d erased scores", len(pks))
        with _local_lock:
            _local_log.append((next(_local_positions), list(pks)))
            del _local_log[:-PURGE_HISTORY]
        return
    try:
        client.xadd(_log_key(), {"pks": json.dumps(list(pks))}, maxlen=PURGE_HISTORY, approximate=False)
    except RedisError as exc:
        redis_failed(exc)
        logger.exception("could not tell other processes to drop %d erased scores", len(pks))


_local_log: list[tuple[int, list[int]]] = []
_local_positions = itertools.count(1)
_local_lock = threading.Lock()


def _log_key() -> str:
    return f"{settings.GUARD_NAMESPACE}:parsed-scores:purges"


def _purges_since(position: str | None) -> tuple[list[int], str | None] | None:
    """The score pks purged after `position` (None: the whole log) and the log's newest position; None if the
    log cannot be read now."""
    client = shared_redis()
    if client is None:
        with _local_lock:
            entries = [(str(at), pks) for at, pks in _local_log if position is None or at > int(position)]
    else:
        try:
            raw = client.xrange(_log_key(), min=f"({position}" if position else "-", max="+")
        except RedisError as exc:
            # Said when the outage begins (with the outage itself, apps.core.redis), not at each retry every few
            # seconds, with its traceback, by every process.
            if not redis_degraded():
                logger.warning("cannot read the parsed-score purge log (%s); purges wait for it", exc)
            redis_failed(exc)
            return None
        entries = [(at.decode(), json.loads(fields[b"pks"])) for at, fields in raw]
    if not entries:
        return [], position if position is not None else "0"
    return [pk for _, pks in entries for pk in pks], entries[-1][0]
