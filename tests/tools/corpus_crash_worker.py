"""The Celery app of tests/tools/test_corpus_crash.py's workers: the project's app, with two test-only changes.

- The broker's visibility timeout is CRASH_VISIBILITY_TIMEOUT seconds (the product's is above the chunks' 150 s
  hard limit, too long for a test), and the worker keeps its unacknowledged messages under keys of its own queue,
  so that its sweeps never hand back chunks of other test sessions sharing the Redis server.
- The first chunk to contain the work CRASH_STALL_PATH stops until killed, after writing the pid of the process
  running it to CRASH_MARKER. Ordinary chunks take about a second, too short to kill a worker "while a chunk is
  running" without racing it; the marker makes it deterministic, and the chunk runs normally the second time.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from celery.signals import task_prerun

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


@task_prerun.connect
def _stall_once(task: Any = None, args: Any = None, **kwargs: Any) -> None:
    if getattr(task, "name", None) != "tools.analyze_corpus_chunk" or not args:
        return
    marker = Path(os.environ["CRASH_MARKER"])
    if os.environ["CRASH_STALL_PATH"] in args[0] and not marker.exists():
        marker.write_text(str(os.getpid()))
        time.sleep(600)


__all__ = ["app"]
