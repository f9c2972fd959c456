"""The in-process cache of parsed scores.

Parsed music21 streams are large object graphs that do not survive pickling cheaply or safely, so they are never put
in the database or a shared cache: each process keeps its own least-recently-used set, bounded by
MAX_SCORES_IN_MEMORY, keyed by the score's primary key and content hash (an edited source never hits a stale entry).
Callers must treat the streams they get back as read-only: other threads may be reading the same object.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from music21 import stream

logger = logging.getLogger(__name__)

# Other processes learn of scores to drop (erasure) through the shared cache: a list of (epoch, score pks) that
# each process reads at most once per PURGE_CHECK_SECONDS, on its next cache lookup.
PURGE_KEY = "parsed-scores:purges"
PURGE_CHECK_SECONDS = 1.0
PURGE_HISTORY = 200

CacheKey = tuple[int, str]


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0


class ParsedScoreCache:
    def __init__(self, capacity: int | None = None) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[CacheKey, stream.Score] = OrderedDict()
        self._lock = threading.Lock()
        self.stats = CacheStats()
        self._purge_checked = 0.0
        self._purge_epoch: float | None = None

    @property
    def capacity(self) -> int:
        if not settings.ENABLE_CACHING:
            return 0
        return self._capacity if self._capacity is not None else settings.MAX_SCORES_IN_MEMORY

    def get(self, key: CacheKey) -> stream.Score | None:
        self._purges_apply()
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self.stats.misses += 1
                return None
            self._entries.move_to_end(key)
            self.stats.hits += 1
            return found

    def put(self, key: CacheKey, score: stream.Score) -> None:
        capacity = self.capacity
        if capacity <= 0:
            return
        with self._lock:
            self._entries[key] = score
            self._entries.move_to_end(key)
            while len(self._entries) > capacity:
                self._entries.popitem(last=False)
                self.stats.evictions += 1

    def discard_score(self, pk: int) -> None:
        """Drop every cached version of one score (after delete or erasure)."""
        with self._lock:
            for key in [k for k in self._entries if k[0] == pk]:
                del self._entries[key]

    def _purges_apply(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._purge_checked < PURGE_CHECK_SECONDS:
            return
        self._purge_checked = now
        try:
            purges = cache.get(PURGE_KEY) or []
        except Exception:  # the shared cache is down: purges wait for it
            logger.warning("cannot read the parsed-score purge list", exc_info=True)
            return
        seen = self._purge_epoch
        for epoch, pks in purges:
            if seen is None or epoch > seen:
                for pk in pks:
                    self.discard_score(pk)
        if purges:
            self._purge_epoch = max(epoch for epoch, _ in purges)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries


parsed_scores = ParsedScoreCache()


def parsed_scores_purge(pks: list[int]) -> None:
    """Drop these scores from the parsed-score cache of this process now, and of every other process sharing the
    cache within about a second (erasure)."""
    for pk in pks:
        parsed_scores.discard_score(pk)
    if not pks:
        return
    try:
        purges = (cache.get(PURGE_KEY) or [])[-PURGE_HISTORY:]
        purges.append((time.time(), list(pks)))
        cache.set(PURGE_KEY, purges, timeout=None)
    except Exception:
        logger.exception("could not tell other processes to drop %d erased scores", len(pks))
