"""Reads of scores, always scoped to their owner: there is no selector that can return another user's score."""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import json
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from django.db import InterfaceError, OperationalError, connection
from django.db.models import QuerySet
from tenacity import RetryCallState, retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from apps.core.cache import EpochMemo
from apps.core.errors import InvalidArguments, NotFound
from apps.tools.models import Score

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


def _reconnect(retry_state: RetryCallState | None = None) -> None:
    # The failed connection is unusable: drop it so that the next attempt opens a fresh one.
    connection.close()


P = ParamSpec("P")
T = TypeVar("T")


def retry_transient_reads(read: Callable[P, T]) -> Callable[P, T]:
    """Reads are idempotent, so a transient connection error (a database restart, a dropped idle connection) is
    worth two more tries on a fresh connection, the second after a short backoff; writes are never retried here.

    The first try runs outside tenacity: its per-call set-up (a copy of the retry policy, its state machine) cost
    0.1 ms on every score tool call, and is now paid only once a read has failed."""
    retrying = retry(
        retry=retry_if_exception_type((OperationalError, InterfaceError)),
        stop=stop_after_attempt(2),
        wait=wait_exponential(multiplier=0.05, max=0.5),
        before_sleep=_reconnect,
        reraise=True,
    )(read)

    @functools.wraps(read)
    def first_try(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return read(*args, **kwargs)
        except (OperationalError, InterfaceError):
            _reconnect()
        return retrying(*args, **kwargs)

    return first_try


# Score rows read by score tool calls, kept under the stamp of their owner's scores (see apps.security.guards):
# the next call that reads the same stamp at its admission uses the row again without a query. Every change to a
# user's scores renews the stamp once committed (apps.tools.signals), and nothing is kept longer than
# SCORE_ROWS_SECONDS, which bounds how long a change can go unseen if the stamp could not be renewed.
SCORE_ROWS_SECONDS = 10.0
_score_rows = EpochMemo(SCORE_ROWS_SECONDS)


def scores_stamp_name(owner_id: Any) -> str:
    return f"scores:{owner_id}"


def score_rows_forget(owner_id: Any) -> None:
    """Drop the rows this process keeps of the owner's scores (erasure)."""
    _score_rows.forget(keep=lambda key: key[0] != owner_id)


@retry_transient_reads
def score_get(*, owner: AbstractBaseUser, score_id: str, stamp: str | None = None) -> Score:
    """The owner's score with this id. Another user's score is reported exactly as a missing one.

    Its source is not read (a parsed-score cache hit does not need it; `score.source` still loads it). With
    `stamp`, the stamp of the owner's scores read at the call's admission, a row this process read under the same
    stamp is used again (a copy of it, as it was read)."""
    kept = _score_rows.get((owner.pk, score_id), stamp)
    if kept is not None:
        return copy.copy(kept)
    score = _score_row(owner.pk, score_id)
    if score is None:
        raise NotFound(f"No score with id {score_id!r}. Use list_scores to see your scores.")
    _score_rows.put((owner.pk, score_id), copy.copy(score), stamp)
    return score


def _score_row(owner_id: int, score_id: str) -> Score | None:
    # Every score tool call starts here, so the query, its columns and the fields' conversions from the database
    # are worked out once (_score_by_owner) instead of by the ORM on each call (its compiler 0.5 ms of CPU on the
    # test machine; a raw queryset's column mapping and converters still 0.08 ms on SQLite, 0.15 on PostgreSQL).
    sql, attnames, converters = _score_by_owner()
    with connection.cursor() as cursor:
        cursor.execute(sql, [owner_id, score_id])
        row = cursor.fetchone()
    if row is None:
        return None
    values = list(row)
    for index, functions, column in converters:
        for function in functions:
            values[index] = function(values[index], column, connection)
    return Score.from_db(connection.alias, attnames, values)


@functools.cache
def _score_by_owner() -> tuple[str, list[str], list[tuple[int, list[Any], Any]]]:
    """SELECT of every column but the sources, by owner and score id (unique together); the fields' names; and,
    by column, the conversions the ORM would apply to its value (the backend's, then the field's)."""
    quote = connection.ops.quote_name
    meta = Score._meta
    fields = [f for f in meta.concrete_fields if f.name not in Score.SOURCE_FIELDS]
    columns = ", ".join(quote(f.column) for f in fields)
    owner, score_id = (quote(meta.get_field(name).column) for name in ("owner", "score_id"))
    sql = f"SELECT {columns} FROM {quote(meta.db_table)} WHERE {owner} = %s AND {score_id} = %s"  # noqa: S608 - names from the model
    converters = []
    for index, field in enumerate(fields):
        column = field.get_col(meta.db_table)
        functions = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
        if functions:
            converters.append((index, functions, column))
    return sql, [f.attname for f in fields], converters


@retry_transient_reads
def score_list(*, owner: AbstractBaseUser, limit: int, cursor: str | None = None) -> tuple[list[Score], str | None]:
    """A page of the owner's scores, newest first, and the cursor for the next page (None on the last)."""
    queryset: QuerySet[Score] = Score.objects.filter(owner=owner).defer(*Score.SOURCE_FIELDS)
    if cursor:
        created_at, pk = _decode_cursor(cursor)
        queryset = queryset.filter(created_at__lte=created_at).exclude(created_at=created_at, id__gte=pk)
    page = list(queryset.order_by("-created_at", "-id")[: limit + 1])
    next_cursor = _encode_cursor(page[limit - 1]) if len(page) > limit else None
    return page[:limit], next_cursor


@retry_transient_reads
def score_ids_starting(*, owner: AbstractBaseUser, prefix: str, limit: int) -> tuple[list[str], int]:
    """The owner's score ids that start with `prefix`, in order (at most `limit`), and how many there are."""
    matching = Score.objects.filter(owner=owner, score_id__startswith=prefix)
    ids = list(matching.order_by("score_id").values_list("score_id", flat=True)[:limit])
    return ids, (len(ids) if len(ids) < limit else matching.count())


def _encode_cursor(score: Score) -> str:
    raw = json.dumps([score.created_at.isoformat(), score.pk]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The position a cursor of `_encode_cursor` names. Anything else is the caller's mistake, refused here as
    invalid arguments: a cursor that reached the query (an unparseable date, an id past the database's integers)
    would fail there as the server's own error."""
    refused = InvalidArguments(
        "cursor: not one returned by list_scores; pass its next_cursor unchanged, or omit it for the first page.",
        extra={"argument": "cursor"},
    )
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        created_at, pk = position
        created = datetime.fromisoformat(created_at)
    except (binascii.Error, ValueError, TypeError, UnicodeError):
        raise refused from None
    if created.tzinfo is None or type(pk) is not int or not 0 < pk <= _LARGEST_ID:
        raise refused
    return created, pk


_LARGEST_ID = 2**63 - 1  # a bigint: a larger id overflows the database driver
