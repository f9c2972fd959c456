"""Database connections of the threads and processes that serve call after call (MCP worker threads, tool threads
and tool processes), kept the way Django's request cycle keeps them, with one saving.

Django closes a connection that failed or outlived CONN_MAX_AGE at the start and end of each request, and with
CONN_HEALTH_CHECKS asks a kept connection `SELECT 1` on its first use in each request. A call crosses two
threads, so that was two extra round trips per call. Here a connection that finished its previous call cleanly
less than RECENTLY_HEALTHY seconds ago skips the check; one idle for longer, or one that saw an error, is still
checked (or closed) as before. A database restart within that window costs the next query on such a connection
an error: reads retry on a fresh connection (apps.tools.selectors), and the audit trail retries its INSERT once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from django.db import close_old_connections, connections

T = TypeVar("T")
RECENTLY_HEALTHY = 5.0


def with_connections(function: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run `function` as one request would, as far as the database connections of this thread are concerned."""
    _begin()
    try:
        return function(*args, **kwargs)
    finally:
        _end()


def _begin() -> None:
    now = time.monotonic()
    for connection in connections.all(initialized_only=True):
        connection.close_if_unusable_or_obsolete()
        clean_at = getattr(connection, "m21_clean_at", None)
        if connection.connection is not None and clean_at is not None and now - clean_at < RECENTLY_HEALTHY:
            connection.health_check_done = True


def _end() -> None:
    now = time.monotonic()
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None and not connection.errors_occurred:
            connection.m21_clean_at = now
    close_old_connections()
