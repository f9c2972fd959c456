"""Django's PostgreSQL backend, which checks the connection the pool hands out, and after a dead one checks the
pool's other idle connections at once.

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

from typing import Any

import psycopg
from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        connection = super().get_new_connection(conn_params)
        pool = self.pool
        if pool is None:
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
