"""Corpus jobs: an analysis over many works of the bundled music21 corpus, spread over Celery workers in chunks.

This module sits above both halves of a job: the pure per-work analysis (apps.tools.services.corpus, which knows
nothing of Celery) and the task that runs one chunk of it (apps.tools.tasks.analyze_corpus_chunk). The tool
declaration (analyze_corpus in apps.tools.declarations.analysis) calls corpus_job_run.

A job is cut into chunks of a few works; each chunk is one Celery task that needs only music21, not the database,
so any worker on any machine can take it. Without a broker (the embedded default) the chunks run one after another
in this process. Either way the caller hears progress after every chunk and can cancel between chunks (and, with
workers, revoke what is queued or running).

A worker crash loses no chunk: chunks are acknowledged after they ran (see the task), so one whose worker died is
delivered again, to whichever worker is there, and the job goes on. Each chunk's result is kept under its task
id, `corpus-<job>-<index>`, so a chunk that runs twice counts once; one that fails (its time limit, its worker
lost three times: apps.tools.tasks) costs only its own works' results. While a chunk is lost the caller hears
nothing new; if no chunk finishes for WORKER_SILENCE_SECONDS and no worker of the queue answers either, the
caller gets an `unavailable` error at once rather than waiting out CORPUS_JOB_TIMEOUT.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from typing import Any

from celery import group
from django.conf import settings

from apps.core.errors import ApplicationError, InvalidArguments, ServiceUnavailable
from apps.tools.services.corpus import CORPUS_ANALYSES
from apps.tools.tasks import analyze_corpus_chunk

CHUNK_SIZE = 8  # works per task: small enough for steady progress and balance, large enough to amortise dispatch
POLL_SECONDS = 0.25
# No chunk finished for this long: ask whether any worker of the queue is there (one broadcast, 1 s). None answering
# means the job cannot go on, and the caller is told so now. With the prefork pool (deploy/'s) a worker answers
# while its processes analyse; a `--pool=solo` worker answers only between chunks, so keep chunks shorter than this.
WORKER_SILENCE_SECONDS = 60.0
WORKER_PING_SECONDS = 1.0

Progress = Callable[[int, int, str], None]


class Cancelled(ApplicationError):
    code = "cancelled"
    http_status = 499


def corpus_job_run(
    paths: list[str],
    *,
    analysis: str,
    progress: Progress | None = None,
    is_cancelled: Callable[[], bool] = lambda: False,
) -> list[dict[str, Any]]:
    """Run the analysis over `paths` in chunks (Celery tasks when a broker is configured), reporting progress."""
    if analysis not in CORPUS_ANALYSES:
        raise InvalidArguments(f"Unknown corpus analysis {analysis!r}; use one of: {', '.join(CORPUS_ANALYSES)}.")
    chunks = [paths[i : i + CHUNK_SIZE] for i in range(0, len(paths), CHUNK_SIZE)]
    report = progress or (lambda done, total, message: None)
    report(0, len(paths), f"{len(paths)} works in {len(chunks)} chunks")
    if settings.CELERY_TASK_ALWAYS_EAGER:
        results: list[dict[str, Any]] = []
        for chunk in chunks:
            if is_cancelled():
                raise Cancelled(f"Cancelled after {len(results)} of {len(paths)} works.")
            results.extend(analyze_corpus_chunk.apply(args=(chunk, analysis)).get())
            report(len(results), len(paths), chunk[-1])
        return results
    return _run_on_workers(chunks, analysis, total=len(paths), report=report, is_cancelled=is_cancelled)


def _run_on_workers(
    chunks: list[list[str]], analysis: str, *, total: int, report: Progress, is_cancelled: Callable[[], bool]
) -> list[dict[str, Any]]:
    job_id = uuid.uuid4().hex[:12]
    job = group(
        analyze_corpus_chunk.signature((chunk, analysis), task_id=f"corpus-{job_id}-{index}")
        for index, chunk in enumerate(chunks)
    ).apply_async()
    done_chunks = -1
    last_change = time.monotonic()
    try:
        while not job.ready():
            if is_cancelled():
                job.revoke(terminate=True)
                raise Cancelled(f"Cancelled; {job.completed_count()} of {len(chunks)} chunks had finished.")
            completed = job.completed_count()
            if completed != done_chunks:
                done_chunks, last_change = completed, time.monotonic()
                report(min(total, completed * CHUNK_SIZE), total, f"{completed} of {len(chunks)} chunks done")
            elif time.monotonic() - last_change > WORKER_SILENCE_SECONDS:
                if not _queue_has_workers(analyze_corpus_chunk.app):
                    # Best effort: a worker that was only busy skips the rest; one that comes back runs them unread.
                    with contextlib.suppress(Exception):
                        job.revoke()
                    raise ServiceUnavailable(
                        f"The Celery workers are not answering: no chunk of this job finished and no worker replied "
                        f"for {WORKER_SILENCE_SECONDS:.0f} s ({min(total, completed * CHUNK_SIZE)} of {total} works "
                        "were done). The job was abandoned; call analyze_corpus again once the workers are back."
                    )
                last_change = time.monotonic()  # workers are there (a lost chunk comes back to them): wait on
            time.sleep(POLL_SECONDS)
        results = [work for chunk, outcome in zip(chunks, job.results, strict=True) for work in _works(chunk, outcome)]
    finally:
        if job.ready():
            job.forget()  # results live in Redis until forgotten
    report(total, total, "done")
    return results


def _works(paths: list[str], outcome: Any) -> list[dict[str, Any]]:
    """A chunk's results, or, when the chunk itself failed (its time limit, its process lost three times), each of
    its works with that error: the rest of the job keeps its results."""
    if outcome.successful():
        return list(outcome.result)
    error = f"{type(outcome.result).__name__}: {outcome.result}"[:300]
    return [{"path": path, "error": f"not analysed, its chunk failed on the worker: {error}"} for path in paths]


def _queue_has_workers(app: Any) -> bool:
    """Whether a worker consuming the chunks' queue answers (a worker of other queues cannot run them)."""
    queue = app.conf.task_default_queue
    replies = app.control.inspect(timeout=WORKER_PING_SECONDS).active_queues() or {}
    return any(q.get("name") == queue for queues in replies.values() for q in queues or ())
