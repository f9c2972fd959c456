"""Retention deletes what is past its period, keeps the rest, and records what it did."""

from __future__ import annotations

import os
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.compliance import audit
from apps.compliance.models import AuditEvent, RetentionPolicy, RetentionRun
from apps.security.models import SecurityEvent
from apps.tools.models import Score
from tests.support import manage_py


def _policy(category: str, days: int) -> None:
    RetentionPolicy.objects.update_or_create(category=category, defaults={"days": days, "enabled": True})


def _aged(alice: Any, call: Any, score_id: str, days: int) -> None:
    call(alice, "import_score", score_id=score_id, source="tinyNotation: 4/4 c4 d e f", source_type="tinynotation")
    Score.objects.filter(owner=alice, score_id=score_id).update(created_at=timezone.now() - timedelta(days=days))


def test_a_30_day_policy_removes_a_31_day_old_score_and_keeps_a_29_day_old_one(alice: Any, call: Any) -> None:
    _policy("scores", 30)
    _aged(alice, call, "old", 31)
    _aged(alice, call, "recent", 29)
    out = StringIO()
    call_command("apply_retention", stdout=out)
    assert list(Score.objects.filter(owner=alice).values_list("score_id", flat=True)) == ["recent"]
    assert "scores: removed 1" in out.getvalue()
    run = RetentionRun.objects.get()
    assert run.removed["scores"] == 1 and not run.dry_run
    recorded = AuditEvent.objects.get(action="retention.run")
    assert recorded.detail["scores"] == 1 and recorded.target == f"retention-run:{run.pk}"


def test_a_dry_run_removes_nothing_and_says_what_it_would(alice: Any, call: Any) -> None:
    _policy("scores", 30)
    _aged(alice, call, "old", 31)
    out = StringIO()
    call_command("apply_retention", "--dry-run", stdout=out)
    assert Score.objects.filter(owner=alice, score_id="old").exists()
    assert "scores: would remove 1" in out.getvalue()
    assert RetentionRun.objects.get().dry_run


def test_derived_scores_have_their_own_period(alice: Any, call: Any) -> None:
    _policy("derived_scores", 7)
    _policy("scores", 365)
    _aged(alice, call, "tune", 10)
    call(alice, "transpose_score", score_id="tune", interval="P5")
    Score.objects.filter(score_id="tune-transposed").update(created_at=timezone.now() - timedelta(days=8))
    call_command("apply_retention", stdout=StringIO())
    assert list(Score.objects.filter(owner=alice).values_list("score_id", flat=True)) == ["tune"]


def test_old_audit_events_go_and_the_chain_still_verifies(alice: Any, call: Any) -> None:
    _policy("audit_events", 30)
    for score_id in ("a", "b", "c"):
        _aged(alice, call, score_id, 0)
    audit.audit_seal()
    oldest = list(AuditEvent.objects.order_by("seq")[:2])
    # Make the two oldest events 40 days old, the way time would (a direct update: the ORM refuses edits). Their
    # hashes then no longer match, so the chain would be broken *if* they stayed: retention must remove them.
    AuditEvent.objects.filter(pk__in=[e.pk for e in oldest]).update(created_at=timezone.now() - timedelta(days=40))
    remaining = AuditEvent.objects.count() - 2
    call_command("apply_retention", stdout=StringIO())
    assert not AuditEvent.objects.filter(pk__in=[e.pk for e in oldest]).exists()
    out = StringIO()
    call_command("verify_audit_chain", stdout=out)
    # the retention run's own event is added and sealed
    assert f"{remaining + 1} events verified" in out.getvalue()


def test_security_events_past_their_period_are_removed(alice: Any) -> None:
    _policy("security_events", 90)
    old = SecurityEvent.objects.create(kind="rate_limit", user=alice)
    SecurityEvent.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=91))
    fresh = SecurityEvent.objects.create(kind="rate_limit", user=alice)
    call_command("apply_retention", stdout=StringIO())
    assert list(SecurityEvent.objects.values_list("pk", flat=True)) == [fresh.pk]


def test_blocks_that_ended_longer_ago_than_the_security_events_period_are_removed_with_their_history(
    db: None,
) -> None:
    from auditlog.models import LogEntry

    from apps.security.models import Block

    _policy("security_events", 90)
    now = timezone.now()
    Block.objects.create(target="ip", value="203.0.113.9", reason="test", until=now - timedelta(days=91))
    recent = Block.objects.create(target="ip", value="203.0.113.10", reason="test", until=now - timedelta(days=89))
    call_command("apply_retention", stdout=StringIO())
    assert list(Block.objects.values_list("pk", flat=True)) == [recent.pk]
    # Its history held the address too: only the kept block's remains.
    assert list(LogEntry.objects.get_for_model(Block).values_list("object_pk", flat=True)) == [str(recent.pk)]
    assert not [e for e in LogEntry.objects.all() if "203.0.113.9" in str(e.changes) + e.object_repr]
    assert RetentionRun.objects.latest("started_at").removed["security_events"] == 1


def test_a_disabled_policy_removes_nothing(alice: Any, call: Any) -> None:
    RetentionPolicy.objects.update_or_create(category="scores", defaults={"days": 1, "enabled": False})
    _aged(alice, call, "old", 400)
    call_command("apply_retention", stdout=StringIO())
    assert Score.objects.filter(score_id="old").exists()


def test_records_of_codes_exchanged_longer_ago_than_the_period_are_removed(db: None) -> None:
    from oauth2_provider.models import Application

    from apps.security.models import ConsumedAuthorizationCode

    _policy("expired_tokens", 30)
    client = Application.objects.create(
        name="c", client_type="public", authorization_grant_type="authorization-code", redirect_uris="http://127.0.0.1/"
    )
    old = ConsumedAuthorizationCode.objects.create(code_sha256="a" * 64, application=client)
    ConsumedAuthorizationCode.objects.filter(pk=old.pk).update(consumed_at=timezone.now() - timedelta(days=31))
    recent = ConsumedAuthorizationCode.objects.create(code_sha256="b" * 64, application=client)
    call_command("apply_retention", stdout=StringIO())
    assert list(ConsumedAuthorizationCode.objects.values_list("pk", flat=True)) == [recent.pk]


def test_sign_in_records_older_than_the_security_events_period_are_removed(alice: Any) -> None:
    from axes.models import AccessAttempt, AccessLog

    _policy("security_events", 90)
    long_ago = timezone.now() - timedelta(days=91)
    old = AccessLog.objects.create(username="alice", ip_address="203.0.113.5", user_agent="old browser")
    AccessLog.objects.filter(pk=old.pk).update(attempt_time=long_ago)
    fresh = AccessLog.objects.create(username="alice", ip_address="203.0.113.6", user_agent="new browser")
    failed = AccessAttempt.objects.create(username="alice", ip_address="203.0.113.7", failures_since_start=1)
    AccessAttempt.objects.filter(pk=failed.pk).update(attempt_time=long_ago)
    call_command("apply_retention", stdout=StringIO())
    assert list(AccessLog.objects.values_list("pk", flat=True)) == [fresh.pk]
    assert not AccessAttempt.objects.exists()


def test_sessions_expired_longer_ago_than_the_tokens_period_are_removed(alice: Any) -> None:
    from django.contrib.sessions.models import Session

    from tests.support import signed_in

    _policy("expired_tokens", 30)
    signed_in(alice)
    Session.objects.update(expire_date=timezone.now() - timedelta(days=31))
    live = signed_in(alice).session.session_key
    call_command("apply_retention", stdout=StringIO())
    assert list(Session.objects.values_list("session_key", flat=True)) == [live]


@pytest.mark.parametrize("command", ["apply_retention", "verify_audit_chain", "run_due_requests"])
def test_the_cron_commands_on_a_database_not_yet_migrated_say_so_in_one_line(command: str, tmp_path: Any) -> None:
    result = manage_py(command, env={**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'new.sqlite3'}"})

    assert result.returncode == 1
    assert "CommandError: cannot read the database (no such table: " in result.stderr
    assert "Traceback" not in result.stderr
