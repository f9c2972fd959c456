"""A corpus-sized job spread over Celery worker processes: `analyze_corpus` (key analysis) of Bach works with 1 and 2
worker processes, against a plain serial music21 loop over the same works in one process.

Needs REDIS_URL (the broker). The workers read a queue of their own and the same database as this process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _serial(paths: list[str]) -> float:
    from music21 import corpus

    from apps.tools.services.keys import key_analysis

    started = time.perf_counter()
    for path in paths:
        key_analysis(corpus.parse(path), algorithm="aarden")
    return time.perf_counter() - started


def _with_workers(processes: int, limit: int) -> float:
    from django.contrib.auth import get_user_model

    from apps.tools.invocation import Caller, invoke_tool
    from music21_platform.celery import app

    queue = f"bench-corpus-{uuid.uuid4().hex[:8]}"
    app.conf.task_default_queue = queue
    worker = subprocess.Popen(  # noqa: S603 - our own interpreter
        [sys.executable, "-m", "celery", "-A", "music21_platform", "worker", f"--concurrency={processes}",
         "--loglevel=WARNING", f"--queues={queue}", f"--hostname={queue}@localhost", "--without-gossip",
         "--without-mingle", "--without-heartbeat", "--prefetch-multiplier=1"],
        cwd=ROOT,
        env={**os.environ, "CELERY_QUEUE": queue},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(120):
            replies = app.control.ping(destination=[f"{queue}@localhost"], timeout=0.5)
            if replies:
                break
        user, _ = get_user_model().objects.get_or_create(username="bench-corpus")
        caller = Caller.operator(user)
        arguments = {"composer": "bach", "analysis": "key", "limit": limit}
        invoke_tool("analyze_corpus", {**arguments, "limit": 4}, caller=caller)  # warm every pool process a little
        started = time.perf_counter()
        result = invoke_tool("analyze_corpus", arguments, caller=caller)
        elapsed = time.perf_counter() - started
        failed = result["summary"]["failed"]
        if failed:
            print(f"({failed} works failed to analyse with {processes} worker process(es))")
        return elapsed
    finally:
        worker.terminate()
        worker.wait(timeout=60)


def run(limit: int = 1000) -> tuple[str, float | None]:
    """The corpus-job table, and the parallel efficiency of 2 worker processes against 1 (None when skipped)."""
    if not os.environ.get("REDIS_URL"):
        return "\n(corpus job benchmark skipped: it needs REDIS_URL for the Celery broker)", None
    os.environ.setdefault("CORPUS_JOB_TIMEOUT", "3600")
    from django.conf import settings

    settings.CORPUS_JOB_TIMEOUT = 3600.0
    from apps.tools.services.corpus import corpus_select

    paths = corpus_select(composer="bach", limit=limit)
    _serial(paths)  # warm-up: music21 caches each parsed corpus file on disk; every timed run below finds them there
    serial = _serial(paths)
    one = _with_workers(1, limit)
    two = _with_workers(2, limit)
    lines = [
        f"\n### Corpus job: key analysis of {len(paths)} Bach works\n",
        "| run | seconds | speed-up over serial music21 | parallel efficiency |",
        "|---|---|---|---|",
        f"| plain music21, serial, one process | {serial:.1f} | 1.00x | |",
        f"| analyze_corpus, 1 Celery worker process | {one:.1f} | {serial / one:.2f}x | {serial / one:.0%} |",
        f"| analyze_corpus, 2 Celery worker processes | {two:.1f} | {serial / two:.2f}x | {serial / two / 2:.0%} |",
        f"\n(2 processes against 1: {one / two:.2f}x, efficiency {one / two / 2:.0%})",
    ]
    return "\n".join(lines), one / two / 2


if __name__ == "__main__":
    import argparse

    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=1000)
    args = parser.parse_args()
    from bench.harness import setup_django

    setup_django()
    print(run(limit=args.limit)[0])
