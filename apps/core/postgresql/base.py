"""Django's PostgreSQL backend, which checks the connection the pool hands out when the server may have cut it,
and after a dead one checks the pool's other idle connections at once.

A restart of PostgreSQL cuts every idle connection of the pool. Django's own health check (CONN_HEALTH_CHECKS, which
it passes to psycopg's pool as `check`) finds them one at a time, and the pool waits between finds with a
backoff: it goes on at once after the first dead connection, waits a second after the second, and gives up after
the third, so a request meeting three fails `unavailable` while the database is up. Here the first dead connection
is taken as what it almost always means, and `ConnectionPool.check()` (psycopg's public API) replaces every broken
idle connection before the request takes another.

Settings turn CONN_HEALTH_CHECKS off for this backend: with it on, the pool would run its own check first, with its
backoff, and each connection would be checked twice.
"""

from __future__ import annotations

import select
from typing import Any

import psycopg
from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool


def maybe_cut(connection: psycopg.Connection[Any]) -> bool:
    """Whether the server may have ended this idle connection: it is closed, or its socket has something to read.

    PostgreSQL sends nothing on an idle connection, except when it ends the session (a restart, a terminated
    backend, a timeout): then an error message and the end of the stream, and the socket reads as ready. So a
    connection whose socket has nothing to read is handed out without the empty query that would ask it, a round
    trip to the server on every call (and every round trip waits longest when the machine has been idle). The
    socket is looked at through `fileno()`, which psycopg offers for waiting on readiness."""
    if connection.closed:
        return True
    ready = select.poll()
    ready.register(connection.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(ready.poll(0))


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        connection = super().get_new_connection(conn_params)
        pool = self.pool
        if pool is None or not maybe_cut(connection):
            return connection
        try:
            ConnectionPool.check_connection(connection)
        except psycopg.Error:
            pool.putconn(connection)  # the pool discards a broken connection it is given back
            pool.check()
            connection = super().get_new_connection(conn_params)
            try:
                ConnectionPool.check_connection(connection)
            except psycopg.Error:
                pool.putconn(connection)
                raise
        return connection
