"""Celery tasks of the tools app: thin wrappers that take plain data and call one service. Dispatching a corpus
job's chunks and waiting for them is apps.tools.corpus_jobs's, above this module."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from django.core.cache import cache

from apps.tools.services.corpus import corpus_analyze_works

logger = logging.getLogger(__name__)

# A chunk is a few corpus works; a work that takes minutes is pathological, and the hard limit frees the worker.
# The broker's visibility timeout (CELERY_BROKER_TRANSPORT_OPTIONS in settings) must stay above the hard limit:
# an unacknowledged chunk older than that is delivered again, as if its worker had died.
CHUNK_SOFT_TIME_LIMIT = 120
CHUNK_TIME_LIMIT = 150
# A chunk delivered this many times has seen its worker die under it each time (a work too large for the memory):
# it is not run again, and its works are reported as not analysed.
CHUNK_MAX_RUNS = 3


@shared_task(
    bind=True,
    name="tools.analyze_corpus_chunk",
    soft_time_limit=CHUNK_SOFT_TIME_LIMIT,
    time_limit=CHUNK_TIME_LIMIT,
    # Acknowledged once it ran, not when it was taken: a chunk whose worker dies (killed, out of memory, its
    # machine gone) is delivered again instead of being lost with it. A pool process that dies is noticed by its
    # worker, which hands the chunk back at once; a whole worker that dies leaves it unacknowledged in Redis, where
    # the next worker finds it once the visibility timeout has passed. The chunk's result is stored under its task
    # id, so running it twice changes nothing (apps.tools.corpus_jobs).
    acks_late=True,
    reject_on_worker_lost=True,
)
def analyze_corpus_chunk(self: Task, paths: list[str], analysis: str) -> list[dict[str, Any]]:
    if _runs(self.request.id) > CHUNK_MAX_RUNS:
        reason = f"not analysed: the worker analysing these works died {CHUNK_MAX_RUNS} times (too large to analyse?)"
        return [{"path": path, "error": reason} for path in paths]
    return corpus_analyze_works(paths, analysis)


def _runs(task_id: str | None) -> int:
    """How many times this chunk has started, counted in the shared cache: handing a chunk back when its worker
    dies would otherwise loop forever on one that kills every worker. (Celery 5.7's retry_on_worker_lost with
    max_retries would count too, but its count stayed at 1 from the second retry on: tried.)"""
    key = f"corpus-chunk-runs:{task_id}"
    try:
        cache.add(key, 0, timeout=24 * 3600)  # as long as Celery keeps a result; a job ends long before
        return int(cache.incr(key))
    except Exception:  # a cache outage must not stop analyses: count this run as the first
        logger.warning("could not count the runs of corpus chunk %s", task_id, exc_info=True)
        return 1
