"""The audit trail: record events, seal them into a hash chain, verify the chain.

`audit_write` commits one event or raises `AuditNotRecorded`: a tool call writes its event with it before it is
answered, and fails instead when it cannot (apps.tools.invocation). `audit_record` is for events of actions already
done: it logs a failure loudly. Nothing is buffered in memory: an event is in the table or its failure is known.

Writing is one INSERT with no lock, so tool calls never queue behind each other for the trail. Sealing runs apart
(a thread in each process that wrote, for the events it wrote; the periodic `compliance.seal_audit` task and
`verify_audit_chain` itself, for every unsealed one): under a lock on the chain head it takes the rows in id
order, gives each the next `seq`, `prev_hash` = the hash before it and `hash` = SHA-256(prev_hash + canonical JSON
of the row). Editing or deleting a sealed row breaks the chain at that row.

Personal data: events carry the person's pseudonym, never their id or name, and their IP address encrypted with
their own key (see apps.compliance.models). Events with no person keep only a truncated IP address.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import logging
import secrets
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, connection, transaction

from apps.compliance.models import AuditChainHead, AuditEvent, SubjectKey
from apps.core.db import no_connection_to_be_had, with_connections

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

logger = logging.getLogger(__name__)

GENESIS = "0" * 64
SEAL_BATCH = 500


# --- Subjects -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    pseudonym: str
    key: str

    @functools.cached_property
    def fernet(self) -> Fernet:
        return Fernet(self.key.encode())


_subjects: dict[int, Subject] = {}
_subjects_lock = threading.Lock()


def subject_for(user: AbstractBaseUser | None) -> Subject | None:
    """The person's pseudonym and key, created on first use; cached per process (they never change, and erasure
    forgets them through `subject_forget`). None when the database cannot be reached: `audit_write` then tries
    again, and a tool call whose event still cannot be written fails `unavailable`."""
    if user is None or user.pk is None:
        return None
    found = _subjects.get(user.pk)
    if found is not None:
        return found
    try:
        return _subject_load(user)
    except DatabaseError:
        logger.exception("cannot load the subject key of user %s", user.pk)
        return None


def _subject_load(user: AbstractBaseUser) -> Subject:
    row = SubjectKey.objects.filter(user_id=user.pk).first()
    if row is None:
        try:
            with transaction.atomic():
                row = SubjectKey.objects.create(
                    user_id=user.pk, pseudonym=secrets.token_hex(16), key=Fernet.generate_key().decode()
                )
        except IntegrityError:  # created by another call at the same moment
            row = SubjectKey.objects.get(user_id=user.pk)
    subject = Subject(pseudonym=row.pseudonym, key=row.key)
    with _subjects_lock:
        _subjects[user.pk] = subject
    return subject


def subject_forget(user_id: int) -> None:
    with _subjects_lock:
        _subjects.pop(user_id, None)
    _ip_sealed.cache_clear()  # it holds keys too


def ip_reveal(event: AuditEvent, *, subject: Subject | None = None) -> str | None:
    """The event's IP address if it can still be read (its person not erased), for administrators and the
    person's export (which passes the person's `subject`, so that a thousand events cost no thousand queries)."""
    if not event.ip:
        return None
    if not event.ip.startswith("gAAAA"):
        return event.ip  # truncated, stored in clear
    if subject is None or subject.pseudonym != event.actor:
        row = SubjectKey.objects.filter(pseudonym=event.actor).first()
        if row is None:
            return None
        subject = Subject(pseudonym=row.pseudonym, key=row.key)
    try:
        return subject.fernet.decrypt(event.ip.encode()).decode()
    except InvalidToken:
        return None


@functools.lru_cache(maxsize=4096)
def _ip_sealed(subject: Subject, ip: str) -> str:
    """The address encrypted with the person's key, once per person and address in this process: a busy client's
    calls then share one ciphertext (they share the person's pseudonym already), and erasure, which destroys the
    key, still makes every copy unreadable."""
    return subject.fernet.encrypt(ip.encode()).decode()


def _truncated(ip: str) -> str:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address) + f"/{prefix}"


# --- Recording ----------------------------------------------------------------------------------------------------


class AuditNotRecorded(Exception):
    """The event could not be written (the database refused the row or could not be reached). What it describes
    must not be reported as done: a tool call that cannot be recorded is not answered with its result."""


def audit_record(**event: Any) -> None:
    """Append one event (the arguments of `audit_write`), for actions that have already happened and cannot be
    refused any more (a sign-in, a breaker changing state). A trail that cannot be written is logged loudly with
    the event's action and outcome; nothing is queued or retried later."""
    try:
        audit_write(**event)
    except AuditNotRecorded:
        logger.exception("could not write the audit event %s %s", event.get("action"), event.get("outcome"))


def audit_write(
    *,
    action: str,
    outcome: str,
    user: AbstractBaseUser | None = None,
    subject: Subject | None = None,
    client_id: str | None = None,
    ip: str | None = None,
    target: str = "",
    duration_ms: float | None = None,
    request_id: str = "",
    transport: str = "",
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one event, committed when this returns (inside a transaction: part of it), or raise
    `AuditNotRecorded`. Tool calls write their event with this before they are answered."""
    if not settings.AUDIT_LOG_ENABLED:
        return
    try:
        if subject is None and user is not None and user.pk is not None:
            # Not `subject_for`, which gives None when the database fails: the event would lose its person.
            subject = _subjects.get(user.pk) or _subject_load(user)
        stored_ip = ""
        if ip:
            stored_ip = _ip_sealed(subject, ip) if subject else _truncated(ip)
        fields = {
            "actor": subject.pseudonym if subject else "",
            "client_id": _storable(client_id or ""),
            "action": action,
            "target": _storable(target[:300]),
            "outcome": outcome,
            "duration_ms": duration_ms,
            "ip": stored_ip,
            "request_id": _storable(request_id),
            "transport": transport,
            "detail": _storable(detail or {}),
        }
        event = AuditEvent(**fields)
        if connection.in_atomic_block:
            # A savepoint, so that a refused row leaves the caller's transaction usable for its own handling.
            with transaction.atomic():
                event.save(force_insert=True)
        else:
            try:
                event.save(force_insert=True)
            except (OperationalError, InterfaceError) as error:
                if no_connection_to_be_had(error):  # the database is down: a second wait would end the same way
                    raise
                # A connection the database dropped between the pool's check and this write: one more try, on a
                # fresh connection.
                connection.close()
                event.save(force_insert=True)
    except DatabaseError as exc:
        raise AuditNotRecorded(f"the audit event {action} {outcome} could not be written: {exc}") from exc
    if connection.in_atomic_block:
        transaction.on_commit(functools.partial(_sealer.wake, event.pk))  # not before it can be seen
    else:
        _sealer.wake(event.pk)


def _storable(value: Any) -> Any:
    """`value` with every NUL character in its text replaced (U+FFFD): a caller's argument may hold one (a score id
    of "a\x00b"), and PostgreSQL stores no NUL in text or JSON, which would refuse the event, and the call with it."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value


# --- Sealing ------------------------------------------------------------------------------------------------------


def _canonical(event: AuditEvent) -> bytes:
    fields = {
        "seq": event.seq,
        "created_at": event.created_at.isoformat(),
        "actor": event.actor,
        "client_id": event.client_id,
        "action": event.action,
        "target": event.target,
        "outcome": event.outcome,
        "duration_ms": event.duration_ms,
        "ip": event.ip,
        "request_id": event.request_id,
        "transport": event.transport,
        "detail": event.detail,
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str).encode()


def event_hash(prev_hash: str, event: AuditEvent) -> str:
    return hashlib.sha256(prev_hash.encode() + _canonical(event)).hexdigest()


def audit_seal(*, ids: Collection[int] | None = None, batch: int = SEAL_BATCH) -> int:
    """Seal every unsealed event into the chain, or only those among `ids` (events a process wrote, looked up by
    their primary key: see `_Sealer`); returns how many. Safe to run in several processes at once."""
    if ids is None:
        return _seal_from(batch, None)
    ordered = sorted(ids)
    return sum(_seal_from(batch, ordered[i : i + batch]) for i in range(0, len(ordered), batch))


def _seal_from(batch: int, ids: list[int] | None) -> int:
    sealed = 0
    while True:
        try:
            count = _seal_batch(batch, ids)
        except _HeadMoved:
            continue  # another sealer went first: take the next batch from its head
        sealed += count
        if count < batch or ids is not None:
            return sealed


class _HeadMoved(Exception):
    pass


def _seal_batch(batch: int, ids: list[int] | None) -> int:
    with transaction.atomic():
        head, _ = AuditChainHead.objects.select_for_update().get_or_create(pk=1)
        if ids is None:
            rows = list(AuditEvent.objects.filter(seq__isnull=True).order_by("id")[:batch])
        else:
            # Looked up by primary key alone; whether each is sealed yet is read from the row (under the head's
            # lock: after any sealer that went first has committed). With `seq IS NULL` in the query, PostgreSQL
            # may look for that in the index on seq, through every old version there.
            rows = [row for row in AuditEvent.objects.filter(id__in=ids).order_by("id") if row.seq is None]
        if not rows:
            return 0
        seq, prev = head.seq, head.hash
        for row in rows:
            seq += 1
            row.seq, row.prev_hash = seq, prev
            row.hash = prev = event_hash(prev, row)
        # Claim the head first (a conditional update, so that two sealers cannot both extend it), then the rows.
        if not AuditChainHead.objects.filter(pk=1, seq=head.seq).update(seq=seq, hash=prev):
            raise _HeadMoved
        _rows_update(rows)
        return len(rows)


def _rows_update(rows: list[AuditEvent]) -> None:
    """Write the seals: on PostgreSQL one UPDATE for the batch, its values as arrays (a statement per row cost
    the database as much again as the rows' INSERTs); elsewhere one prepared UPDATE per row (bulk_update's CASE
    expression over a whole batch cost more CPU to build than the database took to run it)."""
    meta = AuditEvent._meta
    quote = connection.ops.quote_name
    seq, prev_hash, hash_ = (quote(meta.get_field(name).column) for name in ("seq", "prev_hash", "hash"))
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    # identifiers from the model, values as parameters
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"UPDATE {table} SET {seq} = v.seq, {prev_hash} = v.prev_hash, {hash_} = v.hash "  # noqa: S608
                "FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[]) AS v(id, seq, prev_hash, hash) "
                f"WHERE {table}.{pk} = v.id",
                [
                    [row.pk for row in rows],
                    [row.seq for row in rows],
                    [row.prev_hash for row in rows],
                    [row.hash for row in rows],
                ],
            )
        else:
            cursor.executemany(
                f"UPDATE {table} SET {seq} = %s, {prev_hash} = %s, {hash_} = %s WHERE {pk} = %s",  # noqa: S608
                [(row.seq, row.prev_hash, row.hash, row.pk) for row in rows],
            )


class _Sealer:
    """A daemon thread per process that seals the events this process wrote, soon after (AUDIT_SEAL_INTERVAL
    seconds), looking them up by id.

    Not "every unsealed row", round after round: sealing a row leaves its old, unsealed version in the table and
    in the index on seq until PostgreSQL vacuums the table (on a busy server, where other transactions are open
    whenever a row is sealed, nearly every one stays), and a lookup of the unsealed rows reads them all again: each
    round would cost more than the last, up to one index entry for every event sealed since the last vacuum. By id,
    a round costs what it seals. What this thread does not seal (events written before a crash) the next full
    sealing does: this thread's first round, the periodic task, `verify_audit_chain`.
    """

    # Ids waiting beyond this many (the database unreachable for a long time) are dropped for one full round.
    MOST_WAITING = 100_000

    def __init__(self) -> None:
        self._pending = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._waiting: list[int] = []
        self._everything = True  # what earlier processes left: the first round seals every unsealed row

    def wake(self, event_id: int) -> None:
        interval = float(getattr(settings, "AUDIT_SEAL_INTERVAL", 0))
        if interval <= 0:
            return
        with self._lock:
            if len(self._waiting) < self.MOST_WAITING:
                self._waiting.append(event_id)
            else:
                self._waiting, self._everything = [], True
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="audit-sealer", daemon=True)
                self._thread.start()
        self._pending.set()

    def _run(self) -> None:
        while True:
            self._pending.wait()
            time.sleep(max(float(getattr(settings, "AUDIT_SEAL_INTERVAL", 1.0)), 0.05))
            self._pending.clear()
            with self._lock:
                ids, self._waiting = self._waiting, []
                everything, self._everything = self._everything, False
            try:
                # Its connection goes back to the pool after each round: the thread holds none while it waits.
                with_connections(audit_seal, ids=None if everything else ids)
            except Exception:
                logger.exception("sealing the audit trail failed; will retry")
                with self._lock:
                    self._waiting = ids + self._waiting
                    self._everything = self._everything or everything
                self._pending.set()
                time.sleep(5)


_sealer = _Sealer()


# --- Verifying ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    verified: int
    unsealed: int
    broken_event_id: int | None = None
    broken_seq: int | None = None
    problem: str = ""


def audit_verify(*, seal_first: bool = True) -> ChainReport:
    """Walk the chain from its start (after retention's pruning) to its head and report the first broken link."""
    if seal_first:
        audit_seal()
    head, _ = AuditChainHead.objects.get_or_create(pk=1)
    expected_seq, prev = head.pruned_through_seq, head.pruned_through_hash
    verified = 0
    rows = AuditEvent.objects.filter(seq__isnull=False).order_by("seq").iterator(chunk_size=2000)
    for row in rows:
        expected_seq += 1
        if row.seq != expected_seq:
            return ChainReport(
                False, verified, 0, row.pk, expected_seq, f"event at position {expected_seq} is missing (deleted)"
            )
        if row.prev_hash != prev:
            return ChainReport(False, verified, 0, row.pk, row.seq, "its previous-hash does not match the chain")
        if event_hash(prev, row) != row.hash:
            return ChainReport(False, verified, 0, row.pk, row.seq, "its contents were changed after sealing")
        prev = row.hash
        verified += 1
    if expected_seq != head.seq or prev != head.hash:
        return ChainReport(
            False, verified, 0, None, expected_seq + 1, f"the chain ends at {expected_seq} but its head is {head.seq}"
        )
    unsealed = AuditEvent.objects.filter(seq__isnull=True).count()
    return ChainReport(True, verified, unsealed)
