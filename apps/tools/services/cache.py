"""The in-process cache of parsed scores.

Parsed music21 streams are large object graphs that do not survive pickling cheaply or safely, so they are never put
in the database or a shared cache: each process keeps its own least-recently-used set, bounded by
MAX_SCORES_IN_MEMORY, keyed by the score's primary key and content hash (an edited source never hits a stale entry).
Callers must treat the streams they get back as read-only: other threads may be reading the same object.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from django.conf import settings
from music21 import stream

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

    @property
    def capacity(self) -> int:
        if not settings.ENABLE_CACHING:
            return 0
        return self._capacity if self._capacity is not None else settings.MAX_SCORES_IN_MEMORY

    def get(self, key: CacheKey) -> stream.Score | None:
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

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries


parsed_scores = ParsedScoreCache()
