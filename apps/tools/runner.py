"""Where tool functions run, and how a call that runs too long is stopped.

Two runners, chosen by TOOL_WORKER_PROCESSES:

- 0: threads of the serving process. The caller is answered at the time limit and `Caller.cancelled` is set, but
  a Python thread cannot be killed: work that ignores the flag runs on until it ends. The bulkhead slot stays
  taken meanwhile, so runaway work can never exceed its compartment. Suited to development and tests.
- N > 0: a pool of N worker processes (pebble). At the time limit the worker running the call is killed and a
  fresh one takes its place, so a pathological score cannot hold a CPU or memory beyond REQUEST_TIMEOUT. Each
  worker keeps its own parsed-score cache and its own database connection. The default outside development.

Tools that report progress and watch the cancel flag themselves (analyze_corpus, whose work runs on Celery) stay
in a thread of the serving process in both modes (`Tool.isolated` is False).
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connections

from apps.tools.errors import ApplicationError, TimedOut
from music21_platform.db import with_connections
from music21_platform.runtime import gc_tune

if TYPE_CHECKING:
    from apps.tools.invocation import Caller
    from apps.tools.registry import Tool

logger = logging.getLogger(__name__)


class WorkerDied(ApplicationError):
    code = "internal_error"
    http_status = 500


_threads: ThreadPoolExecutor | None = None
_processes: Any = None
_calls: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def call_threads() -> ThreadPoolExecutor:
    """Threads in which an event loop runs whole tool calls (`invoke_tool`: guards, the wait for the tool's thread
    or process, the audit event written after the answer). Each keeps a database connection, so their number
    bounds the connections a serving process opens: as many as the bulkhead lets analyses run at once, and a few
    for other calls; calls beyond wait for a thread. (40, anyio's number, took a 2-worker server to 83 connections
    under 32 clients, since a thread writing its audit event is not free for the next call, and PostgreSQL's
    default limit is 100.)"""
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


def _process_pool() -> Any:
    global _processes
    with _lock:
        if _processes is None:
            import pebble

            database = dict(connections["default"].settings_dict)  # the test database name, under pytest
            _processes = pebble.ProcessPool(
                max_workers=settings.TOOL_WORKER_PROCESSES,
                initializer=_worker_start,
                initargs=(database.get("NAME"),),
                # spawn, not fork: a forked child would share the server's sockets (database, Redis) and threads.
                context=multiprocessing.get_context("spawn"),
            )
        return _processes


def runner_start() -> None:
    """Start the tool worker processes now (serving processes call this once started), not at the first call:
    calls that reach a pool still starting wait for whole interpreters to start (2 s and more here), long enough
    for calls queued behind them in the bulkhead to be refused as busy."""
    if settings.TOOL_WORKER_PROCESSES > 0:
        _process_pool().schedule(_ready)  # the pool starts all its workers with its first task


def _ready() -> None:
    """The first task of a new pool: nothing to do."""


def run_tool(tool: Tool, caller: Caller, parsed: Any, *, limit: float) -> dict[str, Any]:
    """Run the tool's function within `limit` seconds, or raise TimedOut."""
    if settings.TOOL_WORKER_PROCESSES > 0 and tool.isolated:
        return _in_process(tool, caller, parsed, limit=limit)
    future = _thread_pool().submit(with_connections, _run_here, tool, caller, parsed)
    try:
        return future.result(timeout=limit)
    except FutureTimeout:
        caller.cancelled.set()
        raise _timed_out(tool, limit) from None


def _in_process(tool: Tool, caller: Caller, parsed: Any, *, limit: float) -> dict[str, Any]:
    from pebble import ProcessExpired

    future = _process_pool().schedule(
        _worker_run,
        args=(
            tool.name,
            caller.user.pk,
            sorted(caller.scopes),
            caller.client_id,
            caller.ip,
            caller.request_id,
            parsed.model_dump(),
        ),
        timeout=limit,
    )
    try:
        return future.result()
    except FutureTimeout:
        logger.warning(
            "tool %s ran past %.1f s: its worker process was killed (request %s)", tool.name, limit, caller.request_id
        )
        raise _timed_out(tool, limit) from None
    except ProcessExpired as exc:
        logger.error("the worker process of tool %s died (%s, request %s)", tool.name, exc, caller.request_id)
        raise WorkerDied(
            f"The worker running {tool.name!r} died (exit code {exc.exitcode}); the call was not completed. "
            f"Request id {caller.request_id}."
        ) from None


def _timed_out(tool: Tool, limit: float) -> TimedOut:
    return TimedOut(
        f"The tool {tool.name!r} did not finish within {limit:g} s ({tool.timeout_setting}) and was stopped; try "
        "a smaller score, a measure range or fewer works."
    )


def _run_here(tool: Tool, caller: Caller, parsed: Any) -> dict[str, Any]:
    from apps.tools.invocation import run_function

    return run_function(tool, caller, parsed)


def _worker_start(database_name: str | None) -> None:
    """Set Django up in a fresh worker process, on the same database as the server."""
    import django

    django.setup()
    if database_name:
        connections["default"].settings_dict["NAME"] = database_name
    gc_tune()


# A worker process remembers the users it has served: the serving process has already checked that the account
# is active before it sends a call here, and tools use the user only as the owner of scores (its key).
_worker_users: dict[Any, Any] = {}


def _worker_run(*call: Any) -> dict[str, Any]:
    """The tool processes' entry point (arguments as _worker_call's)."""
    return with_connections(_worker_call, *call)


def _worker_call(
    name: str,
    user_pk: Any,
    scopes: list[str],
    client_id: str | None,
    ip: str | None,
    request_id: str,
    arguments: dict[str, Any],
) -> dict[str, Any]:
    from django.contrib.auth import get_user_model

    from apps.tools.invocation import Caller, run_function
    from apps.tools.registry import TOOLS

    tool = TOOLS[name]
    user = _worker_users.get(user_pk)
    if user is None:
        user = get_user_model().objects.get(pk=user_pk)
        if len(_worker_users) >= 10_000:
            _worker_users.clear()
        _worker_users[user_pk] = user
    caller = Caller(
        user=user, scopes=frozenset(scopes), client_id=client_id, ip=ip, transport="worker", request_id=request_id
    )
    return run_function(tool, caller, tool.arguments.model_validate(arguments))


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
        if _processes is not None:
            _processes.stop()
            _processes.join(timeout=10)
            _processes = None
