"""Process-wide settings of the Python runtime, applied once a serving process has started."""

from __future__ import annotations

import gc

GC_THRESHOLDS = (10_000, 10, 10)


def gc_tune() -> None:
    """Put everything loaded at start-up (Django, music21, the corpus index) out of the garbage collector's sight,
    and collect the youngest generation every 10,000 allocations instead of 700.

    music21 builds and drops a great many objects per analysis: with the defaults a full collection, which walks
    every object in the process, ran every few calls and stalled the call that set it off (MCP `key_analysis`
    p99 143 ms against a p50 of 17; 24 ms after). Objects created later are still collected as usual.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def garbage_after_call() -> None:
    """Collect the young garbage a tool call left (music21's streams are full of reference cycles), in the process
    that ran it, once its answer is on its way: that collection would otherwise fall in the middle of a later
    call. MCP `chord_analysis` over HTTP, 60 calls a side, A/B on this machine: added p50 +6.7 and +5.8 ms without,
    -0.2 and +0.6 with; p90 196-198 ms against 155-161; `key_analysis` +3.0/+3.2 against +2.8/+3.0 ms."""
    gc.collect(1)
