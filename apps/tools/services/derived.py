"""Data derived from a parsed score (its pitch-class histogram, its harmonies, each part as one line of notes),
computed once per score object and shared by every tool that reads it.

A parsed score is never changed after parsing (the parsed-score cache hands the same stream to every call, see
apps.tools.services.cache), so what is derived from it stays true for as long as the stream lives: the data is kept
beside the stream object itself, in a weak-keyed table, and leaves with it when the parsed-score cache drops the
stream. That cache is keyed by content hash, so an edited score is a new stream with nothing derived yet: there is
no second invalidation story, and memory is bounded by the same MAX_SCORES_IN_MEMORY.

What is kept here must itself be treated as read-only by every caller: other threads read the same objects."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from music21 import stream

T = TypeVar("T")

_derived: weakref.WeakKeyDictionary[stream.Stream, dict[Hashable, Any]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def derived(music: stream.Stream, name: Hashable, compute: Callable[[], T]) -> T:
    """`compute()`'s value for `music`, computed on the first call for this stream and `name` and kept with it.
    Two threads asking at once may both compute it; the answer is the same, and the first one kept wins."""
    with _lock:
        found = _derived.get(music)
        if found is not None and name in found:
            return found[name]
    value = compute()
    with _lock:
        return _derived.setdefault(music, {}).setdefault(name, value)
