"""The Celery app of tests/tools/test_corpus_crash.py's workers: the project's app, with two test-only changes.

- The broker's visibility timeout is CRASH_VISIBILITY_TIMEOUT seconds (the product's is above the chunks' 150 s
  hard limit, too long for a test), and the worker keeps its unacknowledged messages under keys of its own queue,
  so that its sweeps never hand back chunks of other test sessions sharing the Redis server.
- In its pool processes, the first chunk to contain the work CRASH_STALL_PATH stops in its analysis (where memory
  would run out) until killed, after writing the pid of the process running it to CRASH_MARKER. Ordinary chunks
  take about a second, too short to kill a worker "while a chunk is running" without racing it; the marker makes
  it deterministic, and the chunk runs normally the second time (with CRASH_STALL_ALWAYS set, it stops every
  time: a chunk that kills its process whenever it runs).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from celery.signals import worker_process_init

from music21_platform.celery import app

_queue = os.environ["CELERY_QUEUE"]
app.conf.broker_transport_options = {
    **app.conf.broker_transport_options,
    "visibility_timeout": float(os.environ["CRASH_VISIBILITY_TIMEOUT"]),
    "unacked_restore_interval": 1,
    "unacked_key": f"unacked-{_queue}",
    "unacked_index_key": f"unacked_index-{_queue}",
    "unacked_mutex_key": f"unacked_mutex-{_queue}",
}


@worker_process_init.connect
def _stall_once(**kwargs: Any) -> None:
    """In each pool process (Django is set up by then): the chunk's analysis, behind a stall on CRASH_STALL_PATH."""
    from apps.tools import tasks

    analyse = tasks.corpus_analyze_works

    def stalling(paths: list[str], analysis: str) -> list[dict[str, Any]]:
        marker = Path(os.environ["CRASH_MARKER"])
        if os.environ["CRASH_STALL_PATH"] in paths and (os.environ.get("CRASH_STALL_ALWAYS") or not marker.exists()):
            marker.write_text(str(os.getpid()))
            time.sleep(600)
        return analyse(paths, analysis)

    tasks.corpus_analyze_works = stalling


__all__ = ["app"]
