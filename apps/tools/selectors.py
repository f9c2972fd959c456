"""Reads of scores, always scoped to their owner: there is no selector that can return another user's score."""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from django.db import InterfaceError, OperationalError, connection
from django.db.models import QuerySet
from tenacity import RetryCallState, retry, retry_if_exception, stop_after_attempt, wait_exponential

from apps.core.db import no_connection_to_be_had, select_by_equality
from apps.core.errors import InvalidArguments, NotFound
from apps.core.json_input import json_parse
from apps.tools.models import Score

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


def _reconnect(retry_state: RetryCallState | None = None) -> None:
    # The failed connection is unusable: drop it so that the next attempt opens a fresh one.
    connection.close()


P = ParamSpec("P")
T = TypeVar("T")


def _transient(error: BaseException) -> bool:
    return isinstance(error, (OperationalError, InterfaceError)) and not no_connection_to_be_had(error)


def retry_transient_reads(read: Callable[P, T]) -> Callable[P, T]:
    """Reads are idempotent, so a connection that broke under a read (a database restart, a dropped connection)
    is worth two more tries on a fresh connection, the second after a short backoff; writes are never retried here.
    A read that got no connection at all within DB_POOL_TIMEOUT is not tried again: the database is down, and the
    call's answer (`unavailable`) should not wait for it twice.

    The first try runs outside tenacity, whose per-call set-up (a copy of the retry policy, its state machine) every
    score tool call would otherwise pay: it is paid only once a read has failed."""
    retrying = retry(
        retry=retry_if_exception(_transient),
        stop=stop_after_attempt(2),
        wait=wait_exponential(multiplier=0.05, max=0.5),
        before_sleep=_reconnect,
        reraise=True,
    )(read)

    @functools.wraps(read)
    def first_try(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return read(*args, **kwargs)
        except (OperationalError, InterfaceError) as error:
            if not _transient(error):
                raise
            _reconnect()
        return retrying(*args, **kwargs)

    return first_try


@retry_transient_reads
def score_get(*, owner: AbstractBaseUser, score_id: str) -> Score:
    """The owner's score with this id. Another user's score is reported exactly as a missing one.

    Its source is not read (a parsed-score cache hit does not need it; `score.source` still loads it).

    Every score tool call makes this read, so it is one query written once (`_SCORE_ROW`) rather than compiled by
    the ORM on each call: Django's raw queryset still builds the Score and converts its fields (the JSON lists,
    the timestamps) as a queryset would, and leaves the source columns deferred as `defer` does. Compiling the
    same query each time was half of the read's CPU, and measured well over the 0.5 ms a mechanism must pay
    (docs/performance.md, "What a call's time goes to")."""
    for score in Score.objects.raw(_SCORE_ROW, [owner.pk, score_id]):
        return score
    raise score_missing(score_id)


def score_missing(score_id: str) -> NotFound:
    """What a caller is told of a score id they have no score under (or one deleted since its row was read)."""
    return NotFound(f"No score with id {score_id!r}. Use list_scores to see your scores.")


# Every column but the source's, named from the model so that a new field is read too; (owner, score_id) is unique.
_SCORE_ROW = select_by_equality(
    Score,
    fields=tuple(field.name for field in Score._meta.concrete_fields if field.name not in Score.SOURCE_FIELDS),
    where=("owner", "score_id"),
)


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
        position = json_parse(base64.urlsafe_b64decode(cursor.encode()))
        created_at, pk = position
        created = datetime.fromisoformat(created_at)
    except (binascii.Error, ValueError, TypeError, UnicodeError):
        raise refused from None
    if created.tzinfo is None or type(pk) is not int or not 0 < pk <= _LARGEST_ID:
        raise refused
    return created, pk


_LARGEST_ID = 2**63 - 1  # a bigint: a larger id overflows the database driver
