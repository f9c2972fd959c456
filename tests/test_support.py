"""The browser tests' own database work (tests.support.beside_the_browser): while Playwright's sync API runs its
event loop on the test's thread, a read takes a pooled connection and gives it back, so that no connection stays
checked out from one browser test to the next, where a fault test cutting the database's sessions would have
killed it under the next browser test's read."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import SynchronousOnlyOperation
from django.db import connection

from tests.support import beside_the_browser


def _username(pk: int) -> str:
    return get_user_model().objects.get(pk=pk).username


def _connections_in_use() -> int:
    stats = connection.pool.get_stats()
    return int(stats["pool_size"] - stats["pool_available"])


def test_database_reads_beside_a_browser_give_their_connection_back_and_survive_cut_sessions(
    transactional_db: None, alice: Any
) -> None:
    from playwright.sync_api import sync_playwright

    on_postgresql = connection.vendor == "postgresql"
    with sync_playwright():
        # The test's thread has an event loop running: Django refuses a database call made from it...
        with pytest.raises(SynchronousOnlyOperation):
            _username(alice.pk)
        before = _connections_in_use() if on_postgresql else 0
        # ...and the helper's read, on a thread of its own, hands its connection back to the pool.
        assert beside_the_browser(_username, alice.pk) == "alice"
        if on_postgresql:
            assert _connections_in_use() == before

    if on_postgresql:  # what test_faults_database and the audit tests do: every session of the database cut
        import psycopg

        from tests.support import subprocess_database_url

        with psycopg.connect(
            subprocess_database_url().replace("postgres://", "postgresql://"), autocommit=True
        ) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [connection.settings_dict["NAME"]],
            )
        connection.close()  # this thread's own connection was cut too: the next query takes a new one

    with sync_playwright():  # the next browser test's read gets a live connection
        assert beside_the_browser(_username, alice.pk) == "alice"
