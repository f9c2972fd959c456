"""Tool calls in killable worker processes (TOOL_WORKER_PROCESSES > 0): a runaway call is really stopped."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest
from django.db import connection

from apps.core.db import with_connections
from apps.core.errors import Busy, TimedOut
from apps.tools.runner import runner_shutdown, runner_start
from tests.support import ENDLESS_NOTE_MUSICXML, stored_as_is

HEAVY = "beethoven/opus59no1/movement1"  # 5,669 notes: chord analysis takes most of a second


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

    settings.REQUEST_TIMEOUT = 0.2
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


def test_metrics_leave_out_tool_processes_that_were_killed(
    worker_processes: None, alice: Any, call: Any, settings: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector
    from prometheus_client.parser import text_string_to_metric_families

    # As in a web container: the tool processes (spawned after this) write their metrics there, /metrics adds up
    # the directory. The test process itself was not started with it, so nothing else writes there.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    def scraped(name: str, **labels: str) -> float:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(tmp_path))
        text = generate_latest(registry).decode()
        families = text_string_to_metric_families(text)
        return sum(s.value for f in families for s in f.samples if s.name == name and s.labels == labels)

    call(alice, "import_score", score_id="quartet", source=HEAVY, source_type="corpus")
    assert scraped("music21_memory_usage_bytes", type="rss") > 0  # the tool process reports its memory
    settings.REQUEST_TIMEOUT = 0.2
    with pytest.raises(TimedOut, match="was stopped"):
        call(alice, "chord_analysis", score_id="quartet")
    settings.REQUEST_TIMEOUT = 30.0
    call(alice, "health_check")  # answered by the replacement
    runner_shutdown()  # every tool process is killed: none is left whose memory, CPU or open files count
    # Before: a killed process never took its gauges out of the sums, and each one killed at its deadline (or for
    # its memory) added its last memory, CPU and open files to /metrics until the directory was emptied.
    assert scraped("music21_memory_usage_bytes", type="rss") == 0
    assert scraped("music21_open_file_descriptors") == 0


def test_errors_cross_from_the_worker_with_their_details(worker_processes: None, alice: Any, call: Any) -> None:
    from apps.core.errors import NotFound

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
    idle = psutil.Process(worker).cpu_times()
    for _ in range(100):  # settled: the worker's tidying after the last answer is over
        time.sleep(0.05)
        idle, before = psutil.Process(worker).cpu_times(), idle
        if idle.user + idle.system == before.user + before.system:
            break

    def kill_once_working() -> None:
        # The operating system's OOM killer, or an operator, ends the worker in the middle of a long call: once it
        # has spent some CPU on the call (however fast the machine), not after a fixed time.
        process = psutil.Process(worker)
        for _ in range(2000):
            spent = process.cpu_times()
            if spent.user + spent.system - idle.user - idle.system > 0.02:
                break
            time.sleep(0.002)
        os.kill(worker, signal.SIGKILL)

    threading.Thread(target=kill_once_working, daemon=True).start()
    with pytest.raises(WorkerDied, match=r"died \(exit code -9\); the call was not completed"):
        call(alice, "chord_analysis", score_id="quartet")

    replacement = call(alice, "health_check")["process"]
    assert replacement != worker
    assert call(alice, "score_info", score_id="quartet")["notes"] > 5000


def test_a_call_that_takes_memory_without_end_is_stopped_and_blamed_on_its_score(
    worker_processes: None, alice: Any, call: Any, settings: Any
) -> None:
    from apps.core.errors import TooLarge

    stored_as_is(alice, "endless", ENDLESS_NOTE_MUSICXML)  # import refuses it now; stored before, it is still here
    call(alice, "import_score", score_id="chorale", source="bach/bwv66.6", source_type="corpus")
    worker = call(alice, "health_check")["process"]
    settings.MAX_MEMORY_GB = 1.0  # the one tool process may grow by half of it in one call
    settings.REQUEST_TIMEOUT = 120.0  # memory, not time, is what stops it

    with pytest.raises(TooLarge, match=r"needed more than 0\.5 GB of memory.*MAX_MEMORY_GB 1 over 1 processes"):
        call(alice, "export_score", score_id="endless", format="musicxml")

    assert not _alive(worker)  # killed, not left growing
    assert call(alice, "health_check")["process"] != worker
    assert call(alice, "score_info", score_id="chorale")["notes"] == 165


def test_a_tool_process_holding_more_than_its_share_after_a_call_is_replaced(
    worker_processes: None, alice: Any, call: Any, settings: Any
) -> None:
    first = call(alice, "health_check")["process"]
    settings.MAX_MEMORY_GB = 0.05  # less than a tool process holds once started: each is replaced after its call

    assert call(alice, "health_check")["process"] == first  # answered by it, then replaced
    second = call(alice, "health_check")["process"]
    assert second != first
    assert not _alive(first)
    settings.MAX_MEMORY_GB = 8.0
    assert call(alice, "health_check")["process"] != second  # the last one too had outgrown its share
    assert call(alice, "health_check")["process"] == call(alice, "health_check")["process"]


def test_calls_waiting_for_a_busy_worker_get_it_in_their_order_of_arrival(settings: Any) -> None:
    """Under load a late call must not overtake the calls already waiting (a plain queue of idle workers let some
    key_analysis calls wait 18 s while others took 0.2 s)."""
    import threading

    from apps.tools.runner import ToolProcesses

    settings.BH_USER_SHARE = 1.0  # one user's calls here: the line is what is tested, not the share
    pool = ToolProcesses(0, None)  # no processes: the line is what is tested, with a stand-in for one
    worker = SimpleNamespace(ready=True)
    pool._free = type(pool._free)(1)
    pool._idle.append(worker)  # type: ignore[arg-type]
    assert pool._take("alice", None) == (worker, False)  # free: taken without waiting
    served: list[int] = []

    def wait_for_the_worker(n: int) -> None:
        got, waited = pool._take("alice", None)
        assert waited
        served.append(n)
        pool._give_back(got, "alice")  # each passes it on when done, as a finished call does

    threads = []
    for n in range(6):
        threads.append(threading.Thread(target=wait_for_the_worker, args=(n,)))
        threads[-1].start()
        deadline = time.monotonic() + 10
        while len(pool._free._waiting) < n + 1 and time.monotonic() < deadline:
            time.sleep(0.001)  # the next caller arrives only once this one is in line
    pool._give_back(worker, "alice")  # type: ignore[arg-type]
    for thread in threads:
        thread.join(timeout=10)
    assert served == [0, 1, 2, 3, 4, 5]
    assert pool._idle == [worker]


# --- A fair share of the tool processes, and waits counted in the time limit -----------------------------------
#
# These run test-only tools (tests/tools/held_tools.py) in real worker processes, which load them through their
# own settings module: a call there stays busy until the test releases it, so what is asserted is the order in
# which users are answered, not timings.


@pytest.fixture
def held(monkeypatch: Any, tmp_path: Path) -> Iterator[Path]:
    """The test-only tools, in this process and in the tool processes started from now on; yields the folder for
    their marker files."""
    from tests.tools import held_tools

    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "tests.tools.held_tools_settings")
    held_tools.declare()
    yield tmp_path
    runner_shutdown()  # the next test's processes start with its own settings
    held_tools.forget()
    # The calls made in threads gave their connections back to the process's pool (PostgreSQL): close them, or
    # they outlive the test session's database.
    getattr(connection, "close_pool", lambda: None)()


def _warm_processes(size: int, settings: Any) -> list[int]:
    """Start `size` tool processes and wait until each has set Django up; their pids. Reads the pool's private
    state: a test cannot otherwise know that a process has finished starting, and a call that takes one still
    starting waits for it, which would race the orderings asserted below."""
    from apps.tools import runner

    settings.TOOL_WORKER_PROCESSES = size
    runner_shutdown()
    runner_start()
    pool = runner._process_pool()
    for worker in list(pool._all):
        if not worker.ready:
            assert worker.pipe.poll(120), "a tool process did not start"
            assert worker.pipe.recv() == "ready"
            worker.ready = True
    return [worker.process.pid for worker in pool._all]


def _until(condition: Any, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds  # functional bound: far beyond what any step here takes
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.01)


def _release(*markers: Path) -> None:
    for marker in markers:
        Path(f"{marker}.release").touch()


def test_one_users_flood_of_slow_calls_does_not_hold_up_another_users_call(
    held: Path, alice: Any, bob: Any, call: Any, settings: Any
) -> None:
    from apps.tools import runner

    _warm_processes(2, settings)
    call(alice, "import_score", score_id="chorale", source="bach/bwv66.6", source_type="corpus")
    pool = runner._process_pool()
    bobs_markers = [held / f"bob-{n}" for n in range(4)]
    with ThreadPoolExecutor(max_workers=5) as threads:
        try:
            bobs = [threads.submit(with_connections, call, bob, "test_hold", marker=str(m)) for m in bobs_markers]
            started = lambda: [m for m in bobs_markers if Path(f"{m}.started").exists()]  # noqa: E731
            # All four of bob's calls are running or waiting for a process.
            _until(lambda: started() and len(started()) + len(pool._free._waiting) == 4, "bob's calls in line")

            alices = threads.submit(with_connections, call, alice, "score_info", score_id="chorale")
            # Before: both processes ran bob's calls and alice's waited for one of them to end (here: forever).
            answer = alices.result(timeout=60)  # functional bound only; bob's calls never end by themselves
            assert answer["parts"] and answer["status"] == "success"
            assert not any(future.done() for future in bobs)  # answered while all of bob's were still running
            assert len(started()) == 1  # bob's calls hold his share (one of the two processes), one after another
        finally:
            _release(*bobs_markers)
        assert all(future.result(timeout=60)["status"] == "success" for future in bobs)


def test_the_wait_for_a_tool_process_is_part_of_the_time_limit(
    held: Path, alice: Any, bob: Any, call: Any, settings: Any
) -> None:
    _warm_processes(1, settings)
    settings.REQUEST_TIMEOUT = 2.0
    with ThreadPoolExecutor(max_workers=1) as threads:
        first = threads.submit(with_connections, call, bob, "test_hold", marker=str(held / "first"), seconds=1.2)
        _until(lambda: Path(f"{held / 'first'}.started").exists(), "the first call running")
        # Admitted now, this call waits about 1.2 s for the only process, and has about 0.8 s of its 2 s left to
        # run work that takes 1.5 s. Before, its 2 s started only once it had the process: it succeeded.
        with pytest.raises(TimedOut, match="counted from when the call was received"):
            call(alice, "test_hold", marker=str(held / "second"), seconds=1.5)
        assert Path(f"{held / 'second'}.started").exists()  # it did get the process, with what was left of its time
        assert first.result(timeout=60)["status"] == "success"


def test_a_call_that_gets_no_process_before_its_deadline_is_told_busy_and_trips_nothing(
    held: Path, alice: Any, bob: Any, call: Any, settings: Any
) -> None:
    from apps.security import breakers

    _warm_processes(1, settings)
    hog = held / "hog"
    with ThreadPoolExecutor(max_workers=2) as threads:
        try:
            holding = threads.submit(with_connections, call, bob, "test_hold", marker=str(hog))  # admitted with 30 s
            _until(lambda: Path(f"{hog}.started").exists(), "bob's call running")
            settings.REQUEST_TIMEOUT = 1.0
            waiting = threads.submit(with_connections, call, alice, "test_hold", marker=str(held / "quick"), seconds=0)
            # Before: alice's call waited for the process as long as bob's call held it (here: until released).
            with pytest.raises(Busy, match=r"no tool process came free .* within its time limit \(1 s") as refused:
                waiting.result(timeout=60)  # functional bound only
            assert "all 1 were running other calls" in refused.value.message
            assert not Path(f"{held / 'quick'}.started").exists()  # it did not run
            for _ in range(breakers.breaker("music_analysis").fail_max):
                with pytest.raises(Busy):
                    call(alice, "test_hold", marker=str(held / "quick"), seconds=0)
            assert breakers.breaker("music_analysis").current_state == "closed"  # the caller's wait, not a fault
        finally:
            _release(hog)
        assert holding.result(timeout=60)["status"] == "success"


def test_a_call_that_waited_for_a_process_while_its_breaker_opened_is_refused_unrun(
    held: Path, alice: Any, bob: Any, call: Any, settings: Any
) -> None:
    from apps.core.errors import CircuitOpen
    from apps.security import breakers

    _warm_processes(1, settings)
    hog = held / "hog"
    with ThreadPoolExecutor(max_workers=2) as threads:
        try:
            holding = threads.submit(with_connections, call, bob, "test_hold", marker=str(hog))
            _until(lambda: Path(f"{hog}.started").exists(), "bob's call running")
            waiting = threads.submit(with_connections, call, alice, "test_hold", marker=str(held / "queued"))
            from apps.tools import runner

            _until(lambda: len(runner._process_pool()._free._waiting) == 1, "alice's call in line for the process")
            # Meanwhile the group's calls fail (a database outage: each waits out its connection timeout) and the
            # breaker opens. Before: alice's call ran when it got the process, and failed as slowly in its turn.
            breakers.breaker("music_analysis").open()
        finally:
            _release(hog)
        assert holding.result(timeout=60)["status"] == "success"  # it was running: it ends as it would
        with pytest.raises(CircuitOpen, match="circuit breaker open"):
            waiting.result(timeout=60)  # functional bound only
        assert not Path(f"{held / 'queued'}.started").exists()  # refused unrun
    breakers.breaker("music_analysis").close()
    assert call(alice, "health_check")["status"] == "success"  # the process went back to the pool


def test_a_warm_process_is_taken_before_one_still_starting(
    held: Path, alice: Any, bob: Any, call: Any, settings: Any
) -> None:
    pids = _warm_processes(2, settings)
    settings.REQUEST_TIMEOUT = 1.0
    with pytest.raises(TimedOut):  # its process is killed, and a fresh one starts in its place
        call(alice, "test_hold", marker=str(held / "runaway"))
    settings.REQUEST_TIMEOUT = 30.0
    # Before: the process still starting was taken first, and the call waited for a whole interpreter to start.
    assert call(bob, "health_check")["process"] in pids


def test_the_process_started_after_a_users_runaway_call_is_that_users_to_wait_for(
    held: Path, alice: Any, bob: Any, call: Any, settings: Any
) -> None:
    pids = _warm_processes(2, settings)
    settings.REQUEST_TIMEOUT = 1.0
    with pytest.raises(TimedOut):  # alice's heavy score: her process is killed, and a fresh one starts
        call(alice, "test_hold", marker=str(held / "runaway"))
    settings.REQUEST_TIMEOUT = 30.0
    with ThreadPoolExecutor(max_workers=1) as threads:
        again = held / "again"
        try:
            alices = threads.submit(with_connections, call, alice, "test_hold", marker=str(again))
            _until(lambda: Path(f"{again}.started").exists(), "alice's next call running")
            # Before: alice's next call took the warm process, and bob's waited seconds for the fresh one to start
            # (7 s under a flood of heavy scores on two cores).
            assert call(bob, "health_check")["process"] in pids
        finally:
            _release(again)
        assert alices.result(timeout=60)["process"] not in pids  # alice waited for the start her call caused


def test_a_tool_process_remembers_an_answer_after_sending_it(worker_processes: None, alice: Any, call: Any) -> None:
    from apps.tools.models import AnalysisResult

    call(alice, "import_score", score_id="chorale", source="bach/bwv66.6", source_type="corpus")
    assert call(alice, "key_analysis", score_id="chorale")["key"] == "F# minor"
    deadline = time.monotonic() + 10  # the process writes the row once its answer is on its way
    while not AnalysisResult.objects.filter(tool="key_analysis").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert AnalysisResult.objects.filter(tool="key_analysis").count() == 1
    assert call(alice, "key_analysis", score_id="chorale")["key"] == "F# minor"  # answered from it
    assert AnalysisResult.objects.filter(tool="key_analysis").count() == 1


def test_a_tool_process_ends_quietly_when_its_serving_process_closes_the_pipe(capfd: Any) -> None:
    import multiprocessing

    from apps.tools.runner import _ToolProcess

    worker = _ToolProcess(multiprocessing.get_context("spawn"), connection.settings_dict["NAME"])
    try:
        assert worker.pipe.poll(60)  # its "ready" waits unread: closing now resets the connection under it
        worker.pipe.close()  # as a serving process that stops (or dies) does
        worker.process.join(timeout=30)
        assert worker.process.exitcode == 0
        assert "Traceback" not in capfd.readouterr().err  # no error in the logs for an ordinary shutdown
    finally:
        worker.process.kill()


def test_a_question_asked_before_is_answered_while_every_tool_process_is_busy(
    held: Path, alice: Any, bob: Any, call: Any, settings: Any
) -> None:
    _warm_processes(1, settings)
    call(alice, "import_score", score_id="chorale", source="bach/bwv66.6", source_type="corpus")
    first = call(alice, "voice_leading_analysis", score_id="chorale")  # worked out in the tool process
    hog = held / "hog"
    with ThreadPoolExecutor(max_workers=1) as threads:
        try:
            holding = threads.submit(with_connections, call, bob, "test_hold", marker=str(hog))  # admitted with 30 s
            _until(lambda: Path(f"{hog}.started").exists(), "bob's call running")
            settings.REQUEST_TIMEOUT = 1.0
            # Answered on the call's own thread, from the database. Before, it waited for the only tool process
            # and was told busy at its time limit.
            assert call(alice, "voice_leading_analysis", score_id="chorale") == first
            with pytest.raises(Busy, match="no tool process came free"):  # a new question needs the process
                call(alice, "key_analysis", score_id="chorale")
        finally:
            _release(hog)
        assert holding.result(timeout=60)["status"] == "success"
