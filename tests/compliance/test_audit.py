"""The audit trail: every call recorded, sealed into a hash chain that exposes any edit or deletion."""

from __future__ import annotations

import time
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.compliance import audit
from apps.compliance.models import AuditEvent, SubjectKey
from apps.core.errors import InvalidArguments
from apps.tools.invocation import Caller, invoke_tool
from tests.support import eventually
from tests.support import pool_connections_in_use as in_use

# The sealer-thread tests read how many pooled connections are taken, which only PostgreSQL's pool counts.
reads_pool_stats = pytest.mark.skipif(
    "postgresql" not in settings.DATABASES["default"]["ENGINE"], reason="reads the PostgreSQL connection pool's stats"
)


def _verify() -> str:
    out = StringIO()
    call_command("verify_audit_chain", stdout=out)
    return out.getvalue()


def test_each_tool_call_is_recorded_with_who_what_and_outcome(chorale: Any, alice: Any) -> None:
    caller = Caller(user=alice, scopes=frozenset({"music21:read"}), client_id="client-9", ip="203.0.113.7")
    invoke_tool("key_analysis", {"score_id": "chorale"}, caller=caller)
    with pytest.raises(Exception):  # noqa: B017 - a missing score; the record is what is checked
        invoke_tool("key_analysis", {"score_id": "nope"}, caller=caller)
    pseudonym = SubjectKey.objects.get(user=alice).pseudonym
    calls = AuditEvent.objects.filter(action="tool.key_analysis").order_by("id")
    assert [(e.outcome, e.target) for e in calls] == [("success", "score:chorale"), ("not_found", "score:nope")]
    first = calls[0]
    assert first.actor == pseudonym and first.client_id == "client-9"
    assert first.request_id == caller.request_id and first.duration_ms > 0
    # The IP address is stored encrypted with alice's key: readable to administrators, not in the row.
    assert "203.0.113.7" not in first.ip and audit.ip_reveal(first) == "203.0.113.7"
    assert str(alice.pk) not in (first.actor, first.target)


def test_a_score_id_holding_a_nul_is_refused_as_invalid_and_its_call_still_recorded(alice: Any) -> None:
    # PostgreSQL stores no NUL in text: the event used to be refused, and the call answered unavailable.
    with pytest.raises(InvalidArguments, match="score_id"):
        invoke_tool("score_info", {"score_id": "a\x00b"}, caller=Caller.operator(alice))
    event = AuditEvent.objects.get(action="tool.score_info")
    assert (event.outcome, event.target) == ("invalid_arguments", "score:a\ufffdb")
    assert "events verified" in _verify()


def test_the_chain_verifies_and_counts_every_event(chorale: Any, alice: Any, call: Any) -> None:
    call(alice, "score_info", score_id="chorale")
    total = AuditEvent.objects.count()
    assert f"{total} events verified" in _verify()
    assert AuditEvent.objects.filter(seq__isnull=True).count() == 0


def test_an_edited_row_breaks_the_chain_at_that_row(chorale: Any, alice: Any, call: Any) -> None:
    for _ in range(3):
        call(alice, "score_info", score_id="chorale")
    audit.audit_seal()
    victim = AuditEvent.objects.order_by("seq")[1]
    AuditEvent.objects.filter(pk=victim.pk).update(outcome="success-but-edited")  # what a tamperer would do in SQL
    with pytest.raises(CommandError, match=rf"audit event id {victim.pk} .*changed after sealing"):
        _verify()


def test_a_deleted_row_breaks_the_chain_and_is_named(chorale: Any, alice: Any, call: Any) -> None:
    for _ in range(3):
        call(alice, "score_info", score_id="chorale")
    audit.audit_seal()
    victim = AuditEvent.objects.order_by("seq")[2]
    AuditEvent.objects.filter(pk=victim.pk).delete()
    with pytest.raises(CommandError, match=rf"position {victim.seq}\).*missing"):
        _verify()


def test_the_last_row_deleted_is_noticed_too(chorale: Any, alice: Any, call: Any) -> None:
    call(alice, "score_info", score_id="chorale")
    audit.audit_seal()
    AuditEvent.objects.filter(pk=AuditEvent.objects.order_by("-seq")[0].pk).delete()
    with pytest.raises(CommandError, match="head"):
        _verify()


def test_events_cannot_be_changed_or_deleted_through_the_orm(chorale: Any) -> None:
    event = AuditEvent.objects.first()
    event.outcome = "edited"
    with pytest.raises(ValueError, match="append-only"):
        event.save()
    with pytest.raises(ValueError, match="append-only"):
        event.delete()


def test_sealing_from_two_threads_builds_one_chain(chorale: Any, alice: Any, call: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    for _ in range(40):
        call(alice, "score_info", score_id="chorale")

    def seal() -> int:
        from django.db import connection

        try:
            return audit.audit_seal(batch=7)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        sealed = sum(pool.map(lambda _: seal(), range(2)))
    assert sealed == AuditEvent.objects.count()
    assert "verified" in _verify()


def test_security_relevant_actions_are_audited(live_site: str, alice: Any) -> None:
    import httpx2 as httpx

    with httpx.Client(base_url=live_site, follow_redirects=False) as browser:
        page = browser.get("/accounts/login/")
        token = page.cookies["csrftoken"]
        browser.post(
            "/accounts/login/",
            data={"username": "alice", "password": "wrong", "csrfmiddlewaretoken": token},
            headers={"Referer": live_site},
        )
        browser.post(
            "/accounts/login/",
            data={"username": "alice", "password": "correct horse battery staple", "csrfmiddlewaretoken": token},
            headers={"Referer": live_site},
        )
    logins = list(AuditEvent.objects.filter(action="auth.login").order_by("id").values_list("outcome", "actor"))
    pseudonym = SubjectKey.objects.get(user=alice).pseudonym
    assert logins == [("failure", ""), ("success", pseudonym)]


@pytest.mark.skipif(
    "postgresql" not in settings.DATABASES["default"]["ENGINE"], reason="kills a PostgreSQL backend (CI runs it)"
)
def test_a_call_right_after_the_database_dropped_its_connection_still_succeeds_and_is_audited(
    chorale: Any, alice: Any
) -> None:
    from apps.core.db import with_connections
    from tests.support import database_sessions_cut

    caller = Caller.operator(alice, transport="test")
    with_connections(invoke_tool, "score_info", {"score_id": "chorale"}, caller=caller)  # leaves connections idle
    cut = database_sessions_cut()
    assert cut  # the idle connections the first call left were really cut
    result = with_connections(invoke_tool, "score_info", {"score_id": "chorale"}, caller=caller)
    assert result["measures"] == 10
    assert AuditEvent.objects.filter(action="tool.score_info", transport="test").count() == 2  # none lost


@pytest.fixture
def sealing_soon(settings: Any) -> int:
    """The sealer thread sealing 0.05 s after an event is written; the pooled connections in use before (this
    thread's own, and any other test's still in use)."""
    settings.AUDIT_SEAL_INTERVAL = 0.05
    return in_use()


@reads_pool_stats
def test_the_background_sealer_seals_new_events_then_holds_no_database_connection(
    transactional_db: None, alice: Any, sealing_soon: int
) -> None:
    before = sealing_soon
    audit.audit_write(action="test.sealed", outcome="success", user=alice)  # wakes the sealer thread
    assert _sealed_soon("test.sealed"), "the sealer did not seal the new event"
    assert audit.audit_verify(seal_first=False).ok
    # Once its round is over, the sealer gives its connection back to the pool...
    assert _connections_back(before), f"{in_use() - before} more connections taken after sealing"
    time.sleep(0.3)  # ...and takes none while it waits for the next event
    assert in_use() == before


def _sealed_soon(action: str) -> bool:
    """Whether the events of `action` are there and sealed within 10 s (by the sealer thread)."""
    unsealed = AuditEvent.objects.filter(action=action, seq__isnull=True)
    return eventually(lambda: not unsealed.exists()) and AuditEvent.objects.filter(action=action).exists()


def _connections_back(before: int) -> bool:
    """Whether this process holds no more pooled connections than `before` within 10 s."""
    return eventually(lambda: in_use() <= before)


def _tuples_read() -> int:
    """Rows and index entries of the audit table this transaction has read so far (PostgreSQL's statistics)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(pg_stat_get_xact_tuples_returned(indexrelid)), 0) FROM pg_index "
            "WHERE indrelid = %s::regclass",
            [AuditEvent._meta.db_table],
        )
        (entries,) = cursor.fetchone()
        cursor.execute(
            "SELECT coalesce(seq_tup_read, 0) FROM pg_stat_xact_user_tables WHERE relname = %s",
            [AuditEvent._meta.db_table],
        )
        (rows,) = cursor.fetchone()
    return int(entries) + int(rows)


@pytest.mark.skipif(
    "postgresql" not in settings.DATABASES["default"]["ENGINE"], reason="reads PostgreSQL's statistics of reads"
)
def test_a_round_of_the_sealer_reads_the_events_it_seals_not_every_event_sealed_before(alice: Any) -> None:
    import psycopg
    from django.db import connection, transaction

    def written(count: int) -> list[int]:
        for _ in range(count):
            audit.audit_write(action="test.new", outcome="success", user=alice)
        return list(AuditEvent.objects.filter(action="test.new", seq__isnull=True).values_list("pk", flat=True))

    def read_while(seal: Any) -> int:
        """What `seal()` read of the audit table: its rows and index entries (one transaction's statistics)."""
        with transaction.atomic(), connection.cursor() as cursor:
            # Indexes wherever there is one, as on an audit table of a real size: on a few hundred rows PostgreSQL
            # would rather read the whole table, for every statement.
            cursor.execute("SET LOCAL enable_seqscan = off")
            before = _tuples_read()
            seal()
            return _tuples_read() - before

    # Another transaction open while rows are sealed, as there always is on a busy server: each sealed row's
    # unsealed version then stays in the table and its indexes until a vacuum.
    database = connection.settings_dict
    with psycopg.connect(
        host=database["HOST"] or None, port=database["PORT"] or None, user=database["USER"], dbname=database["NAME"]
    ) as other:
        other.execute("SELECT 1")  # its snapshot taken, its transaction left open
        for _ in range(300):
            audit.audit_write(action="test.earlier", outcome="success", user=alice)
        assert audit.audit_seal() == 300

        written(5)
        # every unsealed row (the periodic task's and verify's way): the versions sealed before are read again
        assert read_while(lambda: audit.audit_seal()) >= 300
        new = written(5)
        # the sealer thread's way, what its process wrote: as much as it seals
        assert read_while(lambda: audit.audit_seal(ids=new)) <= 2 * len(new)
    assert AuditEvent.objects.filter(seq__isnull=True).count() == 0
    assert audit.audit_seal(ids=new) == 0  # sealed ones are left as they are
    assert audit.audit_verify(seal_first=False).ok


@reads_pool_stats
def test_the_sealer_thread_seals_an_event_written_in_a_transaction_once_that_commits(
    transactional_db: None, alice: Any, sealing_soon: int
) -> None:
    from django.db import transaction

    before = sealing_soon
    audit.audit_write(action="test.outside", outcome="success", user=alice)
    assert _sealed_soon("test.outside")
    with transaction.atomic():
        audit.audit_write(action="test.inside", outcome="success", user=alice)
        time.sleep(0.3)  # the sealer's rounds pass meanwhile, and cannot see the row yet
    assert _sealed_soon("test.inside"), "the event was not sealed once its transaction committed"
    with pytest.raises(RuntimeError), transaction.atomic():
        audit.audit_write(action="test.undone", outcome="success", user=alice)
        raise RuntimeError("rolled back")
    audit.audit_write(action="test.after", outcome="success", user=alice)
    assert _sealed_soon("test.after")
    assert not AuditEvent.objects.filter(action="test.undone").exists()
    assert audit.audit_verify(seal_first=False).ok
    assert _connections_back(before)  # the sealer's connection back in the pool before the database is flushed
