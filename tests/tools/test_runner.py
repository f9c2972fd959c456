"""Tool calls in killable worker processes (TOOL_WORKER_PROCESSES > 0): a runaway call is really stopped."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from apps.tools.errors import TimedOut
from apps.tools.runner import runner_shutdown, runner_start

HEAVY = "beethoven/opus59no1/movement1"  # 5,669 notes: chord analysis takes several seconds


@pytest.fixture
def worker_processes(settings: Any) -> Iterator[None]:
    settings.TOOL_WORKER_PROCESSES = 1
    runner_shutdown()  # the next call starts a pool of this size
    yield
    runner_shutdown()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_runaway_call_is_killed_with_its_worker_and_service_goes_on(
    worker_processes: None, alice: Any, call: Any, settings: Any
) -> None:
    call(alice, "import_score", score_id="quartet", source=HEAVY, source_type="corpus")
    worker = call(alice, "health_check")["process"]
    assert worker != os.getpid()  # tools run in the worker, not in the server process

    settings.REQUEST_TIMEOUT = 1.0
    with pytest.raises(TimedOut, match="was stopped"):
        call(alice, "chord_analysis", score_id="quartet")
    # Answered at the limit, by killing the work: a runner that waited for the analysis to end would find its
    # worker alive and idle afterwards.
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker)  # the runaway work is gone, not running on in the background
    settings.REQUEST_TIMEOUT = 30.0
    replacement = call(alice, "health_check")["process"]
    assert replacement != worker
    assert call(alice, "score_info", score_id="quartet")["notes"] > 5000


def test_errors_cross_from_the_worker_with_their_details(worker_processes: None, alice: Any, call: Any) -> None:
    from apps.tools.errors import NotFound

    with pytest.raises(NotFound, match="No score with id 'missing'") as raised:
        call(alice, "score_info", score_id="missing")
    assert raised.value.as_dict()["error"] == "not_found"


def test_a_serving_process_starts_its_worker_before_the_first_call(
    worker_processes: None, alice: Any, call: Any
) -> None:
    before = {child.pid for child in psutil.Process().children()}
    runner_start()  # what music21_platform.asgi does once loaded
    started: set[int] = set()
    deadline = time.monotonic() + 60
    while not started and time.monotonic() < deadline:
        started = {child.pid for child in psutil.Process().children()} - before
        time.sleep(0.05)
    assert call(alice, "health_check")["process"] in started  # the first call is served by the worker already up


def test_a_worker_killed_from_outside_fails_its_call_clearly_and_is_replaced(
    worker_processes: None, alice: Any, call: Any
) -> None:
    import signal
    import threading

    from apps.tools.runner import WorkerDied

    call(alice, "import_score", score_id="quartet", source=HEAVY, source_type="corpus")
    worker = call(alice, "health_check")["process"]
    # The operating system's OOM killer, or an operator, ends the worker in the middle of a long call.
    threading.Timer(0.5, os.kill, (worker, signal.SIGKILL)).start()
    with pytest.raises(WorkerDied, match=r"died \(exit code -9\); the call was not completed"):
        call(alice, "chord_analysis", score_id="quartet")

    replacement = call(alice, "health_check")["process"]
    assert replacement != worker
    assert call(alice, "score_info", score_id="quartet")["notes"] > 5000


def test_calls_waiting_for_a_busy_worker_get_it_in_their_order_of_arrival() -> None:
    """Under load a late call must not overtake the calls already waiting (a plain queue of idle workers let some
    key_analysis calls wait 18 s while others took 0.2 s)."""
    import threading

    from apps.tools.runner import ToolProcesses

    pool = ToolProcesses(0, None)  # no processes: the line is what is tested, with a stand-in for one
    worker = object()
    pool._give_back(worker)  # type: ignore[arg-type]
    assert pool._take() is worker
    served: list[int] = []

    def wait_for_the_worker(n: int) -> None:
        got = pool._take()
        served.append(n)
        pool._give_back(got)  # each passes it on when done, as a finished call does

    threads = []
    for n in range(6):
        threads.append(threading.Thread(target=wait_for_the_worker, args=(n,)))
        threads[-1].start()
        deadline = time.monotonic() + 10
        while len(pool._free._waiting) < n + 1 and time.monotonic() < deadline:
            time.sleep(0.001)  # the next caller arrives only once this one is in line
    pool._give_back(worker)  # type: ignore[arg-type]
    for thread in threads:
        thread.join(timeout=10)
    assert served == [0, 1, 2, 3, 4, 5]
    assert pool._idle == [worker]
