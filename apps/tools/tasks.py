"""Celery tasks of the tools app: thin wrappers that take plain data and call one service."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from apps.tools.services.corpus import corpus_analyze_works

# A chunk is a few corpus works; a work that takes minutes is pathological, and the hard limit frees the worker.
CHUNK_SOFT_TIME_LIMIT = 120
CHUNK_TIME_LIMIT = 150


@shared_task(name="tools.analyze_corpus_chunk", soft_time_limit=CHUNK_SOFT_TIME_LIMIT, time_limit=CHUNK_TIME_LIMIT)
def analyze_corpus_chunk(paths: list[str], analysis: str) -> list[dict[str, Any]]:
    return corpus_analyze_works(paths, analysis)
