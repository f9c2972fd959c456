"""Process-wide settings of the Python runtime, applied once a serving process has started, and what a call does
after its answer has left."""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
from collections.abc import Callable, Iterator

logger = logging.getLogger(__name__)

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
    call. Then, if the call kept something for the long run (`keep_out_of_sight`: a score it parsed), put
    everything alive out of the collector's sight, as `gc_tune` does with what is loaded at start-up."""
    gc.collect(1)
    if _kept[0]:
        _kept[0] = False
        gc.freeze()


# Parsed scores are kept for many calls (apps.tools.services.cache) and are large (tens of thousands of objects
# each). Left in sight, every new one brings CPython's next full collection closer (it runs once the objects that
# survived since the last amount to a quarter of those before), and that collection walks every kept score: a
# pause of a tenth of a second and more in whichever call set it off, longer the more scores are kept.
_kept = [False]


def keep_out_of_sight() -> None:
    """Ask for what this call keeps for the long run (a parsed score) to be put out of the collector's sight once
    the call's young garbage is collected (`garbage_after_call`). What is put out of sight and later dropped is
    freed by `collect_everything`."""
    _kept[0] = True


def collect_everything() -> None:
    """A full collection that sees everything, what is out of sight included (parsed scores the memory dropped),
    after which what is still alive goes out of sight again."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


# --- Work left for after a call's answer ----------------------------------------------------------------------------
# Some of a call's work need not delay its answer: remembering an analysis answer for next time (apps.tools.results)
# is a database write the caller does not wait for. A tool hands such work to `after_answer`; whoever runs the call
# collects it (`deferred_work`) and runs it once the answer has been handed over (`run_deferred`): the invocation
# path after the transport's answer, a tool process after sending its result back. Outside a collector it runs at
# once, so nothing handed over is lost.

_collecting = threading.local()

Task = Callable[[], None]


@contextlib.contextmanager
def deferred_work() -> Iterator[list[Task]]:
    """Collect the `after_answer` work of the code run in this block, in this thread; yields the list it fills."""
    outer = getattr(_collecting, "tasks", None)
    tasks: list[Task] = []
    _collecting.tasks = tasks
    try:
        yield tasks
    finally:
        _collecting.tasks = outer


def after_answer(task: Task) -> None:
    """Run `task` once the current call has been answered, or now if nothing is collecting this thread's work."""
    tasks = getattr(_collecting, "tasks", None)
    if tasks is None:
        run_deferred([task])
    else:
        tasks.append(task)


def run_deferred(tasks: list[Task]) -> None:
    """Run each task; one that fails is logged, as its call has been answered already."""
    for task in tasks:
        try:
            task()
        except Exception:
            logger.exception("work left for after a call's answer failed")
