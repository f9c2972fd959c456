"""Database connections of the threads that serve call after call (MCP worker threads, call and tool threads, tool
processes), handled the way Django's request cycle handles them: `close_old_connections` before and after each
unit of work.

On PostgreSQL that hands the thread's connection back to the process's pool (settings: DB_POOL_*), which bounds the
connections of the process whatever the number of threads, checks a connection before handing it out again, and
closes the ones it has spare after DB_POOL_MAX_IDLE seconds. On SQLite (local use) each thread keeps its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.db import close_old_connections, connection
from django.db.models import Model
from psycopg_pool import PoolTimeout

T = TypeVar("T")


def with_connections(function: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run `function` as one request would, as far as the database connections of this thread are concerned."""
    close_old_connections()
    try:
        return function(*args, **kwargs)
    finally:
        close_old_connections()


def select_by_equality(model: type[Model], *, fields: tuple[str, ...], where: tuple[str, ...]) -> str:
    """A SELECT of `model`'s `fields` (field names, in that order) on rows whose `where` fields each equal a
    parameter (`%s`, in that order), its names quoted from the model: the SQL of a read that a hot path sends
    through `Manager.raw` as it is, instead of the ORM compiling the same query on every call."""
    quote = connection.ops.quote_name
    column = model._meta.get_field
    conditions = " AND ".join(f"{quote(column(name).column)} = %s" for name in where)
    selected = ", ".join(quote(column(name).column) for name in fields)
    return f"SELECT {selected} FROM {quote(model._meta.db_table)} WHERE {conditions}"  # noqa: S608 - quoted names from the model, values as parameters


def no_connection_to_be_had(error: BaseException) -> bool:
    """Whether a database error is the pool's having no connection to give within DB_POOL_TIMEOUT (PostgreSQL
    refusing connections, or every connection taken) rather than a connection that broke: asking again at once
    would only wait as long again, so such an error is not retried."""
    return isinstance(error.__cause__, PoolTimeout)


def database_problem(error: BaseException) -> str:
    """What an operator's command says when the database cannot answer at all: its first line, and what to check,
    instead of a traceback (a database that is down, a wrong DATABASE_URL, a new database not yet migrated)."""
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return f"cannot read the database ({first_line}): check DATABASE_URL, and run `manage.py migrate` on a new one."
