"""analyze_corpus when a Celery worker dies under a job: the job goes on when a worker is there, and the caller
hears within a bounded time when none is.

Each test starts its own workers (tests/tools/corpus_crash_worker.py: the project's app with a short visibility
timeout, and one chunk that stops until killed) and kills one with SIGKILL in the middle of that chunk, as the
kernel's out-of-memory killer or a lost machine would. The stop is test-only code in those workers: a real chunk
lasts about a second, too short to kill its worker in the middle of it without racing it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings

from apps.core.errors import ServiceUnavailable
from apps.tools import corpus_jobs
from apps.tools.corpus_jobs import CHUNK_SIZE, Cancelled
from apps.tools.invocation import Caller, invoke_tool
from apps.tools.services.corpus import corpus_select
from music21_platform.celery import app
from tests.support import OwnRedis, subprocess_database_url

PATTERN, LIMIT = "bach/bwv4*", 28  # 4 chunks: the last one (works 25 to 28) is where the worker dies
StartWorker = Callable[..., subprocess.Popen[bytes]]


@dataclass
class CrashWorkers:
    start: StartWorker
    marker: Path  # written by the stalled chunk: the pid of the process running it
    queue: str


@pytest.fixture(scope="session")
def own_broker() -> Iterator[OwnRedis]:
    """A redis-server for the session's crash tests when no broker is configured: one for the session, since the
    app keeps its broker connections and result backend once made."""
    server = OwnRedis()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def broker(settings: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """The broker's URL: the configured one, or (without REDIS_URL, where tasks run in process) a redis-server of
    the tests' own, to which this process sends the chunks through the app's public configuration."""
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        yield settings.CELERY_BROKER_URL
        return
    url = request.getfixturevalue("own_broker").url
    previous = {key: app.conf[key] for key in ("broker_url", "result_backend", "task_always_eager")}
    app.conf.update(broker_url=url, result_backend=url, task_always_eager=False)
    settings.CELERY_TASK_ALWAYS_EAGER = False
    try:
        yield url
    finally:
        app.conf.update(previous)


@pytest.fixture
def crash_workers(django_db_setup: None, broker: str, tmp_path: Path) -> Iterator[CrashWorkers]:
    """Start workers on a queue of this test's own. Every worker is gone at the end."""
    queue = f"crash-{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "stalled-pid"
    database_url = subprocess_database_url()
    started: list[subprocess.Popen[bytes]] = []
    previous_queue = app.conf.task_default_queue
    app.conf.task_default_queue = queue

    def start(*, stall_always: bool = False) -> subprocess.Popen[bytes]:
        hostname = f"{queue}-{len(started)}@localhost"
        log = (tmp_path / f"worker-{len(started)}.log").open("wb")
        worker = subprocess.Popen(  # noqa: S603 - our own interpreter
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.tools.corpus_crash_worker",
                "worker",
                "--pool=prefork",  # as deployed: a main process, and pool processes that run the chunks
                "--concurrency=1",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                f"--queues={queue}",
                f"--hostname={hostname}",
            ],
            cwd=settings.BASE_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so that its pool processes end with it
            env={
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "music21_platform.settings",
                "DATABASE_URL": database_url,
                "REDIS_URL": broker,  # the broker, and the cache that counts a chunk's deliveries
                "CELERY_QUEUE": queue,
                "AUDIT_SEAL_INTERVAL": "0",
                "CRASH_VISIBILITY_TIMEOUT": "3",
                "CRASH_MARKER": str(marker),
                "CRASH_STALL_PATH": corpus_select(pattern=PATTERN, limit=LIMIT)[-1],
                **({"CRASH_STALL_ALWAYS": "1"} if stall_always else {}),
            },
        )
        started.append(worker)
        for _ in range(120):
            if app.control.ping(destination=[hostname], timeout=0.5):
                return worker
            assert worker.poll() is None, (tmp_path / f"worker-{len(started) - 1}.log").read_text()
        pytest.fail("the Celery worker did not start")

    try:
        yield CrashWorkers(start, marker, queue)
    finally:
        app.conf.task_default_queue = previous_queue
        for worker in started:
            if worker.poll() is None:  # its group: its pool processes too (a stalled chunk would hold up a warm stop)
                os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)
        client = redis.Redis.from_url(broker)
        client.delete(queue, f"unacked-{queue}", f"unacked_index-{queue}", f"unacked_mutex-{queue}")
        client.close()


def _start_job(alice: Any, call: Any, caller: Caller | None = None) -> Future[dict[str, Any]]:
    threads = ThreadPoolExecutor(max_workers=1)
    arguments = {"path_pattern": PATTERN, "limit": LIMIT, "analysis": "key"}
    if caller is None:
        job = threads.submit(call, alice, "analyze_corpus", **arguments)
    else:
        job = threads.submit(invoke_tool, "analyze_corpus", arguments, caller=caller)
    threads.shutdown(wait=False)
    return job


def _wait_for_the_stalled_chunk(
    marker: Path, job: Future[dict[str, Any]], *, killed: frozenset[int] = frozenset()
) -> int:
    """The pid of the process running the last chunk, once it runs (the other chunks are done by then), and not
    one of the `killed`."""
    deadline = time.monotonic() + 120
    while not marker.exists() or not marker.read_text() or int(marker.read_text()) in killed:
        assert not job.done(), job.result()
        assert time.monotonic() < deadline, "the last chunk never started"
        time.sleep(0.05)
    return int(marker.read_text())


def test_a_job_finishes_when_its_worker_is_killed_and_another_starts(
    crash_workers: CrashWorkers, alice: Any, call: Any, settings: Any
) -> None:
    start_worker, marker = crash_workers.start, crash_workers.marker
    settings.CORPUS_JOB_TIMEOUT = 90  # without late acknowledgement the lost chunk never comes back: fail in time
    paths = corpus_select(pattern=PATTERN, limit=LIMIT)
    assert len(paths) == LIMIT > 3 * CHUNK_SIZE

    progress: list[tuple[int, int]] = []
    caller = Caller(user=alice, scopes=frozenset({"music21:read"}), progress=lambda d, t, m: progress.append((d, t)))
    first = start_worker()
    job = _start_job(alice, call, caller)
    _wait_for_the_stalled_chunk(marker, job)
    os.killpg(first.pid, signal.SIGKILL)  # the worker and its pool process, as when its machine goes
    first.wait(timeout=10)
    start_worker()

    result = job.result(timeout=120)
    assert [work["path"] for work in result["results"]] == paths  # every work, once, in order
    assert result["summary"]["works"] == len(paths) and result["summary"]["failed"] == 0
    assert sum(result["summary"]["modes"].values()) == len(paths)
    # The client saw the job stop at 24 of 28 while the chunk was lost, then finish; never going back.
    assert (3 * CHUNK_SIZE, LIMIT) in progress and progress[-1] == (LIMIT, LIMIT)
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)


def test_a_job_finishes_when_the_process_running_a_chunk_is_killed(
    crash_workers: CrashWorkers, alice: Any, call: Any, settings: Any
) -> None:
    """The out-of-memory killer takes one pool process; the worker hands its chunk back, a new process runs it."""
    start_worker, marker = crash_workers.start, crash_workers.marker
    settings.CORPUS_JOB_TIMEOUT = 90
    paths = corpus_select(pattern=PATTERN, limit=LIMIT)

    worker = start_worker()
    job = _start_job(alice, call)
    pool_process = _wait_for_the_stalled_chunk(marker, job)
    assert pool_process != worker.pid
    os.kill(pool_process, signal.SIGKILL)

    result = job.result(timeout=120)
    assert [work["path"] for work in result["results"]] == paths
    assert result["summary"]["works"] == len(paths) and result["summary"]["failed"] == 0


def test_the_caller_is_told_soon_when_no_worker_is_left(
    crash_workers: CrashWorkers, alice: Any, call: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    start_worker, marker = crash_workers.start, crash_workers.marker
    settings.CORPUS_JOB_TIMEOUT = 60
    monkeypatch.setattr(corpus_jobs, "WORKER_SILENCE_SECONDS", 5.0)

    worker = start_worker()
    job = _start_job(alice, call)
    _wait_for_the_stalled_chunk(marker, job)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    killed = time.monotonic()

    with pytest.raises(ServiceUnavailable, match="workers are not answering") as refused:
        job.result(timeout=90)
    assert time.monotonic() - killed < 20  # the silence limit and one unanswered question, not CORPUS_JOB_TIMEOUT
    assert "24 of 28 works were done" in refused.value.message
    assert "call analyze_corpus again" in refused.value.message


def test_a_chunk_stopped_by_cancelling_is_not_handed_back(
    crash_workers: CrashWorkers, broker: str, alice: Any, call: Any, tmp_path: Path
) -> None:
    """Cancelling ends the running chunk's process; although acknowledged late, that chunk is then done with, not
    delivered again once the visibility timeout has passed."""
    crash_workers.start()
    caller = Caller(user=alice, scopes=frozenset({"music21:read"}))
    job = _start_job(alice, call, caller)
    _wait_for_the_stalled_chunk(crash_workers.marker, job)
    caller.cancelled.set()
    with pytest.raises(Cancelled, match="3 of 4 chunks had finished"):
        job.result(timeout=30)

    time.sleep(5)  # past the test workers' visibility timeout (3 s), and their 1 s sweeps
    log = (tmp_path / "worker-0.log").read_text()
    assert len(re.findall(r"\[corpus-\w+-3\] received", log)) == 1, log
    client = redis.Redis.from_url(broker)
    try:
        assert client.hlen(f"unacked-{crash_workers.queue}") == 0
    finally:
        client.close()


def test_a_chunk_that_kills_every_process_running_it_is_reported_not_retried_forever(
    crash_workers: CrashWorkers, alice: Any, call: Any, settings: Any
) -> None:
    """A work too large for the memory kills the process analysing it each time: its chunk is tried three times,
    then its works are reported as not analysed, and every other work keeps its result."""
    settings.CORPUS_JOB_TIMEOUT = 90
    paths = corpus_select(pattern=PATTERN, limit=LIMIT)
    crash_workers.start(stall_always=True)
    job = _start_job(alice, call)
    killed: set[int] = set()
    for _ in range(3):
        pool_process = _wait_for_the_stalled_chunk(crash_workers.marker, job, killed=frozenset(killed))
        os.kill(pool_process, signal.SIGKILL)
        killed.add(pool_process)

    result = job.result(timeout=60)
    assert [work["path"] for work in result["results"]] == paths
    assert result["summary"]["works"] == LIMIT and result["summary"]["failed"] == LIMIT - 3 * CHUNK_SIZE
    for work in result["results"][3 * CHUNK_SIZE :]:
        assert work["error"] == "not analysed: the worker analysing these works died 3 times (too large to analyse?)"
    assert all("key" in work for work in result["results"][: 3 * CHUNK_SIZE])
