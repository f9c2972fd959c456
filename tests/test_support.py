"""The browser tests' own database work (tests.support.beside_the_browser): while Playwright's sync API runs its
event loop on the test's thread, a read takes a pooled connection and gives it back. Read from the test's thread
instead, it took a connection nothing gave back, kept from one browser test to the next: a fault test that cut the
database's sessions killed it under the next browser test's read."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import SynchronousOnlyOperation

from tests.support import beside_the_browser, pool_connections_in_use


def _username(pk: int) -> str:
    return get_user_model().objects.get(pk=pk).username


def test_database_reads_beside_a_browser_give_their_connection_back(transactional_db: None, alice: Any) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright():
        # The test's thread has an event loop running: Django refuses a database call made from it...
        with pytest.raises(SynchronousOnlyOperation):
            _username(alice.pk)
        before = pool_connections_in_use()
        # ...and the helper's read, on a thread of its own, hands its connection back.
        assert beside_the_browser(_username, alice.pk) == "alice"
        assert pool_connections_in_use() == before
