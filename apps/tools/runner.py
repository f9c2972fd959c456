"""Where tool functions run, and how a call that runs too long is stopped.

Two runners, chosen by TOOL_WORKER_PROCESSES:

- 0: threads of the serving process. The caller is answered at the time limit and `Caller.cancelled` is set, but
  a Python thread cannot be killed: work that ignores the flag runs on until it ends, and changes no score once
  its caller has been answered (apps.tools.gate). The bulkhead slot stays taken meanwhile, so runaway work can
  never exceed its compartment. Suited to development and tests.
- N > 0: N worker processes (`ToolProcesses`). At the time limit the worker running the call is killed and a
  fresh one takes its place, so a pathological score cannot hold a CPU beyond REQUEST_TIMEOUT; nor memory: each
  process has an equal part of MAX_MEMORY_GB, a call that grows its process by more than half of that part is
  stopped the same way (`TooLarge`), and a process that holds more than its part after a call (its parsed scores)
  is replaced by a fresh one. Each worker keeps its own parsed-score cache and its own database connection. The
  default outside development.

The time limit is a deadline counted from when the transport received the call (apps.tools.invocation.TimeLimit):
waiting for a thread or a process is part of it. Calls wait for a process in line, and one user's calls hold at most
their share of them.

Tools that report progress and watch the cancel flag themselves (analyze_corpus, whose work runs on Celery) stay
in a thread of the serving process in both modes (`Tool.isolated` is False).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

import psutil
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections

from apps.core import metrics
from apps.core.cache import Memory
from apps.core.db import with_connections
from apps.core.errors import (
    ApplicationError,
    Busy,
    InternalError,
    ServiceUnavailable,
    TimedOut,
    TooLarge,
    WorkerDied,
)
from apps.core.fairness import FairSemaphore, user_share
from apps.core.logs import call_context
from apps.core.runtime import Task, after_answer, deferred_work, garbage_after_call, gc_tune, run_deferred
from apps.tools.caller import Caller
from apps.tools.gate import CallGate, gated
from apps.tools.registry import TOOLS, Tool

if TYPE_CHECKING:  # the tool processes import this module before Django is set up, so not its models
    from apps.tools.results import Question

logger = logging.getLogger(__name__)


_threads: ThreadPoolExecutor | None = None
_processes: ToolProcesses | None = None
_calls: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def call_threads() -> ThreadPoolExecutor:
    """Threads in which an event loop runs whole tool calls (`invoke_tool`: guards, the wait for the tool's thread
    or process, the audit event written before the answer). Each uses at most one pooled database connection at a
    time, so their number enters the bound on the connections a serving process opens (DB_POOL_MAX_SIZE,
    docs/operations.md): as many as the bulkhead lets analyses run at once, and a few for other calls; calls beyond
    wait for a thread."""
    global _calls
    with _lock:
        if _calls is None:
            _calls = ThreadPoolExecutor(max_workers=settings.BH_MAX_CONCURRENT_ANALYSIS + 4, thread_name_prefix="call")
        return _calls


def _thread_pool() -> ThreadPoolExecutor:
    global _threads
    with _lock:
        if _threads is None:
            # Sized past the bulkhead so that the bulkhead, not the pool, is what refuses excess calls.
            _threads = ThreadPoolExecutor(max_workers=settings.MAX_CONCURRENT_REQUESTS + 4, thread_name_prefix="tool")
        return _threads


def _process_pool() -> ToolProcesses:
    global _processes
    with _lock:
        if _processes is None:
            database = dict(connections["default"].settings_dict)  # the test database name, under pytest
            _processes = ToolProcesses(settings.TOOL_WORKER_PROCESSES, database.get("NAME"))
        return _processes


def tools_run_here() -> bool:
    """Whether tool functions run in threads of this process (TOOL_WORKER_PROCESSES = 0)."""
    return settings.TOOL_WORKER_PROCESSES == 0


def runner_start() -> None:
    """Start the tool worker processes now (serving processes call this once started), not at the first call:
    calls that reach a pool still starting wait for whole interpreters to start (2 s and more here), long enough
    for calls queued behind them in the bulkhead to be refused as busy."""
    if not tools_run_here():
        _process_pool()


def run_tool(
    tool: Tool,
    caller: Caller,
    parsed: Any,
    *,
    deadline: float,
    after_waiting: Callable[[], None] | None = None,
    question: Question | None = None,
) -> dict[str, Any]:
    """Run the tool's function before `deadline` (time.monotonic(): the call's admission plus its time limit, so
    that any wait for a thread or a tool process is part of the limit), or raise TimedOut. A call that waited in
    line for a tool process calls `after_waiting` before it runs (`ToolProcesses.run`). A remembered tool's call
    brings its `question` (apps.tools.results), which the tool thread or process answers without reading the score
    row again."""
    if not tools_run_here() and tool.isolated:
        return _in_process(tool, caller, parsed, deadline=deadline, after_waiting=after_waiting, question=question)
    gate = CallGate()  # the thread runs on past the deadline: what it may still change (apps.tools.gate)
    # In the call's context, so that what the tool logs carries the call's request id, user, client and tool.
    run = contextvars.copy_context().run
    future = _thread_pool().submit(run, with_connections, _run_collecting, tool, caller, parsed, question, gate)
    try:
        result, later = future.result(timeout=max(0.0, deadline - time.monotonic()))
    except FutureTimeout:
        caller.cancelled.set()
        if gate.close():
            raise _timed_out(tool, changed=True) from None
        raise _timed_out(tool) from None
    for task in later:  # to the call's own collector (apps.tools.invocation.Afterwards), or run now
        after_answer(task)
    return result


def _run_collecting(
    tool: Tool, caller: Caller, parsed: Any, question: Question | None, gate: CallGate
) -> tuple[dict[str, Any], list[Task]]:
    """`_run_here` in a tool thread under the call's `gate`, with the work it leaves for after the answer, for the
    calling thread."""
    with deferred_work() as later, gated(gate):
        return _run_here(tool, caller, parsed, question), later


def _in_process(
    tool: Tool,
    caller: Caller,
    parsed: Any,
    *,
    deadline: float,
    after_waiting: Callable[[], None] | None,
    question: Question | None,
) -> dict[str, Any]:
    call = (
        tool.name,
        caller.user.pk,
        sorted(caller.scopes),
        caller.client_id,
        caller.ip,
        caller.request_id,
        parsed.model_dump(),
        call_context.get(),  # what the tool process logs carries the call's request id, user, client and tool
        question,  # the score row goes along (without its source, which the tool process reads if it parses)
    )
    try:
        return _process_pool().run(call, owner=caller.user.pk, deadline=deadline, after_waiting=after_waiting)
    except NoProcess as waited:
        raise Busy(
            f"The server is busy: no tool process came free for {tool.name!r} within its time limit "
            f"({_limit(tool):g} s, {tool.timeout_setting}); {waited}. The call did not run; try again in a few seconds."
        ) from None
    except FutureTimeout:
        logger.warning(
            "tool %s ran past its deadline: its worker process was killed (request %s)", tool.name, caller.request_id
        )
        raise _timed_out(tool) from None
    except OverMemory as over:
        logger.warning("tool %s %s: its worker process was killed (request %s)", tool.name, over, caller.request_id)
        raise TooLarge(
            f"The call to {tool.name!r} needed more than {over.allowed / 2**30:.1f} GB of memory, half the share of "
            f"a tool process (MAX_MEMORY_GB {settings.MAX_MEMORY_GB:g} over {settings.TOOL_WORKER_PROCESSES} "
            "processes), and was stopped; this score asks too much of it: try a smaller score or a measure range."
        ) from None
    except WorkerGone as gone:
        logger.error("the worker process of tool %s died (%s, request %s)", tool.name, gone, caller.request_id)
        raise WorkerDied(
            f"The worker running {tool.name!r} died (exit code {gone.exitcode}); the call was not completed. "
            f"Request id {caller.request_id}."
        ) from None


def _limit(tool: Tool) -> float:
    return float(getattr(settings, tool.timeout_setting))


def _timed_out(tool: Tool, *, changed: bool = False) -> TimedOut:
    late = (
        f"The tool {tool.name!r} did not finish within {_limit(tool):g} s ({tool.timeout_setting}, counted from "
        "when the call was received)"
    )
    if changed:  # a thread past its deadline, after it had stored or deleted a score (apps.tools.gate)
        return TimedOut(
            f"{late}, but the change it was making had been made: look at your scores (list_scores) before "
            "repeating it."
        )
    return TimedOut(f"{late} and was stopped; try a smaller score, a measure range or fewer works.")


def _run_here(tool: Tool, caller: Caller, parsed: Any, question: Question | None) -> dict[str, Any]:
    """The tool's own work, wherever the runner puts it: unexpected exceptions become an InternalError."""
    started = time.perf_counter()
    try:
        with tool_errors(tool, caller):
            if question is not None:  # a remembered tool's (apps.tools.invocation.Remembered)
                return question.worked_out(lambda music: tool.function(music, parsed))
            return tool.function(caller, parsed)
    finally:
        metrics.ANALYSIS_DURATION.labels(tool=tool.name).observe(time.perf_counter() - started)


@contextlib.contextmanager
def tool_errors(tool: Tool, caller: Caller) -> Iterator[None]:
    """What a tool's work raises, as the caller is told it: an ApplicationError as it is, the database failing as
    ServiceUnavailable, anything else as an InternalError logged with its traceback."""
    try:
        yield
    except ApplicationError:
        raise
    except (OperationalError, InterfaceError) as exc:
        logger.error("tool %s: the database is unavailable (%s, request %s)", tool.name, exc, caller.request_id)
        raise ServiceUnavailable(
            f"The database is unavailable; nothing was changed. Try again in a moment (request id {caller.request_id})."
        ) from exc
    except Exception as exc:
        logger.exception("tool %s failed (request %s)", tool.name, caller.request_id)
        raise InternalError(
            f"The tool {tool.name!r} failed unexpectedly; the error was logged under request id {caller.request_id}.",
            extra={"request_id": caller.request_id},
        ) from exc


class WorkerGone(Exception):
    """A tool process ended without answering (killed from outside, crashed, or failed to start)."""

    def __init__(self, exitcode: int | None) -> None:
        super().__init__(f"exit code {exitcode}")
        self.exitcode = exitcode


class NoProcess(Exception):
    """No tool process was free and ready before the call's deadline; the message says what the call waited for."""


class OverMemory(Exception):
    """The call grew its tool process by more than it may (`allowed` bytes); the process has been killed."""

    def __init__(self, grown: int, allowed: int) -> None:
        super().__init__(f"grew its worker process by {grown / 2**20:,.0f} MiB, over {allowed / 2**20:,.0f} MiB")
        self.allowed = allowed


# How often a serving process looks at the memory of a tool process running a call (a call answered sooner is not
# looked at while it runs).
MEMORY_CHECK_INTERVAL = 0.25


def memory_share() -> int:
    """The resident memory, in bytes, one tool process may hold: its equal part of MAX_MEMORY_GB."""
    return int(settings.MAX_MEMORY_GB * 2**30) // max(1, settings.TOOL_WORKER_PROCESSES)


class _ToolProcess:
    """One tool process and its end of the pipe it takes calls on, one at a time."""

    def __init__(self, context: Any, database_name: str | None) -> None:
        self.pipe, theirs = context.Pipe()
        self.process = context.Process(
            target=_worker_main, args=(theirs, database_name), name="tool-worker", daemon=True
        )
        self.process.start()
        theirs.close()
        self.ready = False
        self.resident = 0  # bytes, as last read: when it became ready, and after each call
        self._usage = psutil.Process(self.process.pid)

    def memory(self) -> int:
        """Its resident memory now, in bytes (0 once it has ended)."""
        try:
            return int(self._usage.memory_info().rss)
        except psutil.Error:
            return 0

    def stop(self) -> None:
        self.pipe.close()
        self.process.kill()
        self.process.join(timeout=5)
        metrics.process_forget(self.process.pid)

    def gone(self) -> WorkerGone:
        self.process.join(timeout=1)
        return WorkerGone(self.process.exitcode)


class ToolProcesses:
    """N tool processes, each with its own pipe; the thread that makes a call takes an idle process, sends the call
    and waits for the answer itself, up to the call's deadline, past which it kills the process and starts another.

    Calls wait for a process in line, and one user's calls hold at most their share of the processes
    (`FairSemaphore`, BH_USER_SHARE): another user's call is not stuck behind a flood of heavy scores. The wait is
    part of the call's time limit: a call that gets no process before its deadline is refused without running.
    A process that has finished starting is taken before one still starting (after a kill, or at start-up), whose
    start (whole interpreters, seconds) would otherwise be the wait of the call that took it; but a process started
    in place of one killed for a user's call (its deadline, its memory) is that user's next call's to wait for, so
    that the start is waited out by whoever caused it, not by the next user, who would find the warm one taken.

    Hand-written rather than pebble's process pool, which this replaced: pebble hands every call to a scheduling
    thread, sends it down one pipe shared by all its workers under a cross-process lock, and returns an
    acknowledgement and the result through a second thread of the serving process: each hand-over wakes a thread
    or a process, which costs a measurable share of a short call's CPU. What a call needs here is less than pebble
    offers: one caller per process at a time, a kill at the deadline, a fresh process after a kill or a crash, and
    a fair line in front.
    """

    def __init__(self, size: int, database_name: str | None) -> None:
        # spawn, not fork: a forked child would share the server's sockets (database, Redis) and threads.
        self._context = multiprocessing.get_context("spawn")
        self._database_name = database_name
        self._lock = threading.Lock()
        self._all = {self._start() for _ in range(size)}
        self._idle = list(self._all)
        self._free = FairSemaphore(size, user_share(size))
        self._started_for: dict[_ToolProcess, Any] = {}  # a process started after a kill: the owner who caused it

    def _start(self) -> _ToolProcess:
        return _ToolProcess(self._context, self._database_name)

    def _replace(self, worker: _ToolProcess, *, caused_by: Any = None) -> _ToolProcess:
        worker.stop()
        with self._lock:
            self._started_for.pop(worker, None)
            if worker not in self._all:  # the pool has been stopped
                return worker
            self._all.discard(worker)
            fresh = self._start()
            self._all.add(fresh)
            if caused_by is not None:
                self._started_for[fresh] = caused_by
        return fresh

    def run(
        self, call: tuple[Any, ...], *, owner: Any, deadline: float, after_waiting: Callable[[], None] | None = None
    ) -> dict[str, Any]:
        """The result of `call` in an idle tool process, for `owner` (a user: at most their share of the processes
        at once), before `deadline` (time.monotonic()). A call that had to wait for a process calls `after_waiting`
        once it has one, before it runs: whatever that raises ends the call unrun. Raises the call's
        ApplicationError, NoProcess when no process was ready in time (nothing ran), FutureTimeout at the deadline
        or OverMemory (the process is then killed), or WorkerGone."""
        worker, waited = self._take(owner, deadline)
        try:
            if waited and after_waiting is not None:
                after_waiting()
            try:
                if not worker.ready and not worker.pipe.poll(max(0.0, deadline - time.monotonic())):
                    raise NoProcess("the only free one was still starting")
                if not worker.ready:
                    worker.pipe.recv()  # "ready"
                    worker.ready = True
                    worker.resident = worker.memory()
                worker.pipe.send(call)
                answered = self._answered(worker, deadline)
                ok, value = worker.pipe.recv() if answered else (False, None)
            except (EOFError, OSError):
                gone = worker.gone()
                worker = self._replace(worker)
                raise gone from None
            except OverMemory:
                worker = self._replace(worker, caused_by=owner)
                raise
            if not answered:
                worker = self._replace(worker, caused_by=owner)
                raise FutureTimeout
            worker.resident = worker.memory()
            if worker.resident > memory_share():  # what it keeps has outgrown its share: a fresh process
                worker = self._replace(worker)
            if not ok:
                raise value
            return value
        finally:
            self._give_back(worker, owner)

    @staticmethod
    def _answered(worker: _ToolProcess, deadline: float) -> bool:
        """Whether `worker` answered its call before `deadline`, looking at its memory every MEMORY_CHECK_INTERVAL
        meanwhile: a call that grows it by more than half its share raises OverMemory (the caller kills it)."""
        allowed = memory_share() // 2
        while True:
            remaining = deadline - time.monotonic()
            if worker.pipe.poll(max(0.0, min(remaining, MEMORY_CHECK_INTERVAL))):
                return True
            if remaining <= MEMORY_CHECK_INTERVAL:
                return False
            grown = worker.memory() - worker.resident
            if grown > allowed:
                raise OverMemory(grown, allowed)

    def _take(self, owner: Any, deadline: float | None) -> tuple[_ToolProcess, bool]:
        """An idle process for `owner`, and whether the call had to wait in line for it."""
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        free = self._free.acquire(timeout=timeout, owner=owner)
        if free is None:
            held = self._free.holds(owner)
            if self._free.share < self._free.size and held >= self._free.share:
                raise NoProcess(f"your calls held {held} of the {self._free.size}, your share, the whole time")
            raise NoProcess(f"all {self._free.size} were running other calls the whole time")
        with self._lock:
            warm = [worker for worker in self._idle if worker.ready or worker.pipe.poll(0)]  # poll: "ready" came
            # The owner's own restart first, else a warm process, else one still starting (waited for, within the
            # call's deadline).
            own = [w for w in self._idle if w not in warm and owner is not None and self._started_for.get(w) == owner]
            worker = (own or warm or self._idle)[-1]
            self._idle.remove(worker)
            self._started_for.pop(worker, None)
            return worker, not free

    def _give_back(self, worker: _ToolProcess, owner: Any) -> None:
        with self._lock:
            self._idle.append(worker)
        self._free.release(owner=owner)

    def stop(self) -> None:
        with self._lock:
            workers, self._all = self._all, set()
        for worker in workers:
            worker.stop()


def _worker_main(pipe: Any, database_name: str | None) -> None:
    """A tool process: Django set up, then one call after another from `pipe` until the serving process closes it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the serving process, which stops its workers
    _worker_start(database_name)
    pipe.send("ready")
    while True:
        try:
            call = pipe.recv()
        except (EOFError, OSError):  # the serving process closed its end, or is gone: nothing left to do
            return
        with deferred_work() as later:
            try:
                answer: tuple[bool, Any] = (True, with_connections(_worker_call, *call))
            except Exception as error:  # an ApplicationError: _run_here has turned anything else into one
                answer = (False, error)
        try:
            pipe.send(answer)
        except Exception as error:  # an answer that cannot be pickled: say so rather than leave the caller waiting
            logger.exception("tool process: the answer to a call could not be sent back")
            pipe.send((False, WorkerDied(f"The tool's answer could not be returned ({type(error).__name__}).")))
        if later:
            with_connections(run_deferred, later)
        garbage_after_call()


def _worker_start(database_name: str | None) -> None:
    """Set Django up in a fresh worker process, on the same database as the server."""
    import django

    django.setup()
    if database_name:
        connections["default"].settings_dict["NAME"] = database_name
    gc_tune()


# A worker process remembers the users it has served: the serving process has already checked that the account
# is active before it sends a call here, and tools use the user only as the owner of scores (its key). See
# docs/caching.md.
_worker_users = Memory(10_000)


def _worker_call(
    name: str,
    user_pk: Any,
    scopes: list[str],
    client_id: str | None,
    ip: str | None,
    request_id: str,
    arguments: dict[str, Any],
    log_context: dict[str, Any] | None,
    question: Question | None,
) -> dict[str, Any]:
    from django.contrib.auth import get_user_model  # the user model is known once Django is set up

    tool = TOOLS[name]
    user = _worker_users.get(user_pk)
    if user is None:
        user = get_user_model().objects.get(pk=user_pk)
        _worker_users.put(user_pk, user)
    caller = Caller(
        user=user,
        scopes=frozenset(scopes),
        client_id=client_id,
        ip=ip,
        transport="worker",
        request_id=request_id,
    )
    context = call_context.set(log_context)
    try:
        return _run_here(tool, caller, tool.arguments.model_validate(arguments), question)
    finally:
        call_context.reset(context)


def runner_shutdown() -> None:
    """Stop the call threads, tool threads and worker processes (closing their database connections)."""
    global _threads, _processes, _calls
    with _lock:
        if _calls is not None:
            _calls.shutdown(wait=True, cancel_futures=True)
            _calls = None
        if _threads is not None:
            _threads.shutdown(wait=True, cancel_futures=True)
            _threads = None
        processes, _processes = _processes, None
    if processes is not None:
        processes.stop()
