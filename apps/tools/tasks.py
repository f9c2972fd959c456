"""Celery tasks of the tools app: thin wrappers that take plain data and call one service."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from apps.tools.services.corpus import corpus_analyze_works

# A chunk is a few corpus works; a work that takes minutes is pathological, and the hard limit frees the worker.
# The broker's visibility timeout (CELERY_BROKER_TRANSPORT_OPTIONS in settings) must stay above the hard limit:
# an unacknowledged chunk older than that is delivered again, as if its worker had died.
CHUNK_SOFT_TIME_LIMIT = 120
CHUNK_TIME_LIMIT = 150


@shared_task(
    name="tools.analyze_corpus_chunk",
    soft_time_limit=CHUNK_SOFT_TIME_LIMIT,
    time_limit=CHUNK_TIME_LIMIT,
    # Acknowledged once it ran, not when it was taken: a chunk whose worker dies (killed, out of memory, its
    # machine gone) is delivered again instead of being lost with it. A pool process that dies is noticed by its
    # worker, which hands the chunk back at once; a whole worker that dies leaves it unacknowledged in Redis, where
    # the next worker finds it once the visibility timeout has passed. The chunk's result is stored under its task
    # id, so running it twice changes nothing (apps.tools.services.corpus).
    acks_late=True,
    reject_on_worker_lost=True,
)
def analyze_corpus_chunk(paths: list[str], analysis: str) -> list[dict[str, Any]]:
    return corpus_analyze_works(paths, analysis)
