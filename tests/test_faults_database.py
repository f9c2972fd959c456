"""Database faults end cleanly: PostgreSQL refusing connections is a 503 a client can retry (never a 500, never a
401 that would make it throw its token away), the server recovers as soon as it is back, and the connections a
serving process holds stay within the bound docs/operations.md states.

The database is made really unavailable: the test database stops accepting connections and its sessions are
terminated, from a superuser connection to the `postgres` database, and restored in a `finally`."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import pytest
from django.conf import settings
from django.db import OperationalError, connection, connections
from psycopg import sql

from apps.compliance.audit import AuditNotRecorded, audit_write, subject_for
from apps.core.db import with_connections
from apps.security.breakers import breaker_states
from apps.tools.registry import TOOLS
from apps.tools.selectors import score_get
from tests.mcp_bridge.conftest import MCP_HEADERS as PLAIN_MCP_HEADERS
from tests.support import database_sessions_cut, database_superuser, eventually

pytestmark = pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"),
    reason="database faults are played on PostgreSQL (set DATABASE_URL); SQLite has no server to take down",
)

MCP_HEADERS = {**PLAIN_MCP_HEADERS, "MCP-Protocol-Version": "2025-06-18"}


@contextlib.contextmanager
def database_unavailable() -> Iterator[None]:
    """The test database refuses new connections and its open ones are cut, until the block ends."""
    name = connection.settings_dict["NAME"]
    with database_superuser() as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
        try:
            database_sessions_cut(admin)
            yield
        finally:
            admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(name)))
            connections.close_all()  # this thread's connection was cut too: the next query opens a new one


def _database_sessions() -> int:
    with database_superuser() as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [connection.settings_dict["NAME"]],
        ).fetchone()
    assert row is not None
    return int(row[0])


def _call(base_url: str, token: str, tool: str, **arguments: Any) -> httpx.Response:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
    headers = dict(MCP_HEADERS, Authorization=f"Bearer {token}")
    return httpx.post(f"{base_url}/mcp", json=body, headers=headers, timeout=30)


def _succeeded(response: httpx.Response) -> bool:
    return response.status_code == 200 and not response.json().get("result", {}).get("isError", True)


def test_with_the_database_down_a_call_is_told_to_retry_and_works_again_within_a_second(
    live_site: str, alice: Any, token_for: Any
) -> None:
    token = token_for(alice)  # never verified yet: the server must ask the database

    with database_unavailable():
        refused = _call(live_site, token, "list_scores")

        assert refused.status_code == 503  # not a 500, and not a 401 that would make the client drop its token
        assert int(refused.headers["Retry-After"]) >= 1
        error = refused.json()["error"]
        assert "database" in error["message"] and "retry" in error["message"].lower()
        assert error["data"]["error"] == "unavailable"

    back = time.monotonic()
    while not _succeeded(answer := _call(live_site, token, "list_scores")):
        assert time.monotonic() - back < 1.0, f"still failing a second after the database came back: {answer.text}"
        time.sleep(0.05)
    assert answer.json()["result"]["structuredContent"]["scores"] == []


def test_with_the_database_down_server_stats_is_a_503_to_retry_not_a_500_page(live_site: str, token_for: Any) -> None:
    from tests.support import staff_user

    token = token_for(staff_user("ops"), "music21:admin", resource="api")  # never verified yet

    with database_unavailable():
        refused = httpx.get(f"{live_site}/server_stats", headers={"Authorization": f"Bearer {token}"}, timeout=30)

    # Before: Django's "Server Error (500)" HTML page, to the operator looking at the server during the outage.
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"] == "unavailable" and "database" in refused.json()["message"]
    answered = httpx.get(f"{live_site}/server_stats", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert answered.status_code == 200 and answered.json()["status"] == "success"


def _tool_error(response: httpx.Response) -> str:
    return str(response.json()["result"]["structuredContent"]["error"])


def test_after_an_outage_long_enough_to_open_the_breaker_calls_work_again_within_a_second(
    live_site: str, alice: Any, token_for: Any, quick_pool_timeout: None, settings: Any
) -> None:
    token = token_for(alice)
    assert _succeeded(_call(live_site, token, "list_scores"))  # the token is verified: calls reach the tool

    with database_unavailable():
        errors = [_tool_error(_call(live_site, token, "list_scores")) for _ in range(settings.CB_FAILURE_THRESHOLD)]
        assert set(errors) == {"unavailable"}
    # The breaker counted the database as a dependency failing everyone alike, and opened.
    assert breaker_states()[TOOLS["list_scores"].group]["state"] == "open"

    # With the default CB_RECOVERY_TIMEOUT, the breaker lets a trial call through soon enough that service is back
    # within a second of the database, not a minute of circuit_open after it.
    back = time.monotonic()
    while not _succeeded(answer := _call(live_site, token, "list_scores")):
        assert time.monotonic() - back < 1.0, f"still failing a second after the database came back: {answer.text}"
        time.sleep(0.05)


def test_after_a_restart_cut_the_idle_connections_the_next_call_is_answered(
    live_site: str, alice: Any, token_for: Any
) -> None:
    token = token_for(alice)
    connections.close_all()  # the test's own connection goes back to the pool, idle like the others
    pool = connection.pool
    held = [pool.getconn() for _ in range(6)]
    for each in held:
        pool.putconn(each)
    assert pool.get_stats()["pool_available"] >= 6

    assert database_sessions_cut() >= 6  # a restart of PostgreSQL, as the serving process sees it: every session cut

    # psycopg's pool, left to itself, backs off after the second dead connection and gives up at the third: the
    # call would fail `unavailable` with the database up. The first dead one makes the others checked at once.
    for _ in range(3):
        answer = _call(live_site, token, "list_scores")
        assert _succeeded(answer), answer.text


def _idle_in_the_pool(marker: str) -> list[int]:
    """Every connection of this process's pool given back idle, each having run `SELECT '<marker>'` last, as a
    request leaves its connection; their backends' pids."""
    connections.close_all()  # the test's own connection goes back to the pool too
    pool = connection.pool
    held = [pool.getconn()]
    while pool.get_stats().get("pool_available", 0) > 0:
        held.append(pool.getconn())
    for each in held:
        each.autocommit = True  # nothing for the pool to roll back when it is given back
        each.execute(sql.SQL("SELECT {}").format(sql.Literal(marker)))
        pool.putconn(each)
    return [each.info.backend_pid for each in held]


def test_a_pooled_connection_the_server_said_nothing_on_is_handed_out_without_a_round_trip() -> None:
    pids = _idle_in_the_pool("given back")

    connection.ensure_connection()  # a request takes a connection from the pool
    pid = connection.connection.info.backend_pid
    assert pid in pids
    with database_superuser() as admin:
        row = admin.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
    # Still the last query its previous request ran: the empty query that asks a connection whether it works
    # (which would read '') was not sent, as the server had sent nothing on it.
    assert row == ("SELECT 'given back'",)


def test_a_pooled_connection_the_server_cut_while_idle_is_replaced_before_a_request_meets_it() -> None:
    pids = _idle_in_the_pool("about to be cut")
    with database_superuser() as admin:
        assert database_sessions_cut(admin) >= len(pids)
        left = "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)"
        ended = eventually(lambda: admin.execute(left, [pids]).fetchone() == (0,), seconds=5, every=0.01)
        assert ended, "PostgreSQL did not end the terminated sessions"

    with connection.cursor() as cursor:  # a request's first query, on whatever the pool hands out
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
    assert connection.connection.info.backend_pid not in pids


@contextlib.contextmanager
def _pool_rebuilt(**changes: float) -> Iterator[None]:
    """The process's connection pool rebuilt with `changes` to its options for the block; as configured after."""
    options = connection.settings_dict["OPTIONS"].get("pool", {})
    configured = dict(options)
    options.update(changes)
    connection.close_pool()
    try:
        yield
    finally:
        options.clear()
        options.update(configured)
        connection.close_pool()


@pytest.fixture
def quick_idle_pool() -> Iterator[float]:
    """The pool closing a spare connection after half a second idle (instead of DB_POOL_MAX_IDLE), so that a test
    sees them all go."""
    with _pool_rebuilt(max_idle=0.5):
        yield 0.5


@pytest.fixture
def quick_pool_timeout() -> Iterator[None]:
    """The pool waiting a third of a second for a connection (instead of DB_POOL_TIMEOUT)."""
    with _pool_rebuilt(timeout=0.3):
        yield


def _pool_timeouts() -> int:
    """How many requests for a connection this process's pool has let time out."""
    return int(connection.pool.get_stats().get("requests_errors", 0))


def test_with_the_database_down_a_read_and_an_audit_event_each_wait_for_a_connection_once(
    transactional_db: None, alice: Any, quick_pool_timeout: None
) -> None:
    subject = subject_for(alice)
    with database_unavailable():
        timeouts = _pool_timeouts()
        with pytest.raises(OperationalError):
            with_connections(score_get, owner=alice, score_id="chorale")
        after_the_read = _pool_timeouts()
        with pytest.raises(AuditNotRecorded):
            with_connections(audit_write, action="tool.score_info", outcome="unavailable", user=alice, subject=subject)
        after_the_event = _pool_timeouts()

    # A read retried, or an event written again, after the pool had no connection to give within its timeout would
    # wait that long a second time before the caller is told the database is unavailable.
    assert after_the_read - timeouts == 1
    assert after_the_event - after_the_read == 1


def test_connections_stay_within_the_stated_bound_under_load_and_close_when_idle(
    live_site: str, alice: Any, token_for: Any, quick_idle_pool: float
) -> None:
    token = token_for(alice)
    imported = _call(live_site, token, "import_score", score_id="c", source="bach/bwv66.6", source_type="corpus")
    assert _succeeded(imported), imported.text
    peak = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _database_sessions())
            time.sleep(0.01)

    failed: list[str] = []

    def client() -> None:
        for _ in range(4):
            answer = _call(live_site, token, "score_info", score_id="c")
            if not _succeeded(answer):
                failed.append(answer.text)

    watcher = threading.Thread(target=watch)
    watcher.start()
    clients = [threading.Thread(target=client) for _ in range(30)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    stop.set()
    watcher.join()

    # The server shares this process (and its pool) with the test: the test database's sessions are all this
    # process's, and they never exceed what docs/operations.md says one process holds.
    assert failed == []
    assert 0 < peak <= settings.DB_POOL_MAX_SIZE, peak

    # Idle, the pool closes a spare connection every max_idle seconds, down to none.
    connections.close_all()  # the test's own connection goes back to the pool too
    deadline = time.monotonic() + (peak + 4) * quick_idle_pool + 5
    while (held := _database_sessions()) > 0:
        assert time.monotonic() < deadline, f"{held} connections still open after idling"
        time.sleep(0.2)
