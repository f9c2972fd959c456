"""Retention: delete what is older than its category's policy, in batches, and record what was done."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from auditlog.context import disable_auditlog
from auditlog.models import LogEntry
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from oauth2_provider.models import AccessToken, Grant, RefreshToken

from apps.compliance import audit
from apps.compliance.holdings import holding_for
from apps.compliance.models import AuditChainHead, AuditEvent, ExportArchive, RetentionPolicy, RetentionRun
from apps.security.models import Block, ConsumedAuthorizationCode, SecurityEvent

BATCH = 1000
Category = RetentionPolicy.Category


def delete_in_batches(queryset: QuerySet, *, dry_run: bool, on_batch: Callable[[list[int]], None] | None = None) -> int:
    """Delete the rows of `queryset` a batch at a time (short transactions, no long lock on a busy table), and tell
    `on_batch` the primary keys of each batch once it is deleted. Holdings use it for their expiry too."""
    if dry_run:
        return queryset.count()
    removed = 0
    while True:
        pks = list(queryset.order_by("pk").values_list("pk", flat=True)[:BATCH])
        if not pks:
            return removed
        with transaction.atomic():
            queryset.model.objects.filter(pk__in=pks).delete()
        if on_batch:
            on_batch(pks)
        removed += len(pks)


def _audit_events(cutoff: datetime, *, dry_run: bool) -> int:
    """The oldest sealed events, as one unbroken prefix of the chain: the head remembers where the chain now
    starts, so verification still holds end to end."""
    audit.audit_seal()
    boundary = AuditEvent.objects.filter(seq__isnull=False, created_at__gte=cutoff).order_by("seq").first()
    old = AuditEvent.objects.filter(seq__isnull=False)
    if boundary is not None:
        old = old.filter(seq__lt=boundary.seq)
    if dry_run:
        return old.count()
    removed = 0
    while True:
        with transaction.atomic():
            batch = list(old.order_by("seq").values_list("seq", "hash")[:BATCH])
            if not batch:
                return removed
            last_seq, last_hash = batch[-1]
            AuditEvent.objects.filter(seq__lte=last_seq, seq__isnull=False).delete()
            AuditChainHead.objects.filter(pk=1).update(pruned_through_seq=last_seq, pruned_through_hash=last_hash)
        removed += len(batch)


def _expired_tokens(cutoff: datetime, *, dry_run: bool) -> int:
    """Tokens and grants expired (or revoked) longer ago than the period, the records of codes exchanged that long
    ago (kept to recognise a code used twice, which it could not be once expired) and the sessions expired that
    long ago (each names its person): nothing else removes these."""
    return (
        delete_in_batches(RefreshToken.objects.filter(revoked__lt=cutoff), dry_run=dry_run)
        + delete_in_batches(Session.objects.filter(expire_date__lt=cutoff), dry_run=dry_run)
        + delete_in_batches(ConsumedAuthorizationCode.objects.filter(consumed_at__lt=cutoff), dry_run=dry_run)
        + delete_in_batches(
            AccessToken.objects.filter(expires__lt=cutoff).filter(
                Q(refresh_token__isnull=True) | Q(refresh_token__revoked__isnull=False)
            ),
            dry_run=dry_run,
        )
        + delete_in_batches(Grant.objects.filter(expires__lt=cutoff), dry_run=dry_run)
    )


def _sign_in_records(cutoff: datetime, *, dry_run: bool) -> int:
    """django-axes' records of sign-ins and failed sign-ins (address, browser, the name typed) made longer ago than
    the period: nothing else removes them (a lockout looks back LOCKOUT_DURATION only)."""
    return sum(
        delete_in_batches(model.objects.filter(attempt_time__lt=cutoff), dry_run=dry_run)
        for model in (AccessLog, AccessAttempt, AccessFailureLog)
    )


def _blocks_ended(cutoff: datetime, *, dry_run: bool) -> int:
    """Blocks that ended longer ago than the period: an address's block holds the address, a user's her id, and
    nothing else removes them. Their django-auditlog history (which holds the same) goes with them; the deletion
    is not recorded again (the retention run records it)."""
    block_type = ContentType.objects.get_for_model(Block)

    def history_forget(pks: list[int]) -> None:
        LogEntry.objects.filter(content_type=block_type, object_pk__in=[str(pk) for pk in pks]).delete()

    with disable_auditlog():
        return delete_in_batches(Block.objects.filter(until__lt=cutoff), dry_run=dry_run, on_batch=history_forget)


def retention_apply(*, dry_run: bool = False, now: datetime | None = None) -> RetentionRun:
    """Apply every enabled policy: a category a registered holding answers for (scores, derived scores) is expired
    by that holding. Finished export files are also removed once their download window closed, whatever the
    policy. The run is stored and audited."""
    started = time.perf_counter()
    now = now or timezone.now()
    removed: dict[str, int] = {}
    for policy in RetentionPolicy.objects.filter(enabled=True):
        cutoff = now - timedelta(days=policy.days)
        if holding := holding_for(policy.category):
            removed[policy.category] = holding.expire(policy.category, cutoff, dry_run)
            continue
        match policy.category:
            case Category.AUDIT_EVENTS:
                removed[policy.category] = _audit_events(cutoff, dry_run=dry_run)
            case Category.SECURITY_EVENTS:
                removed[policy.category] = (
                    delete_in_batches(SecurityEvent.objects.filter(created_at__lt=cutoff), dry_run=dry_run)
                    + _sign_in_records(cutoff, dry_run=dry_run)
                    + _blocks_ended(cutoff, dry_run=dry_run)
                )
            case Category.EXPIRED_TOKENS:
                removed[policy.category] = _expired_tokens(cutoff, dry_run=dry_run)
            case Category.EXPORT_FILES:
                removed[policy.category] = delete_in_batches(
                    ExportArchive.objects.filter(Q(created_at__lt=cutoff) | Q(expires_at__lt=now)), dry_run=dry_run
                )
    run = RetentionRun.objects.create(
        started_at=now, dry_run=dry_run, removed=removed, duration_ms=(time.perf_counter() - started) * 1000
    )
    audit.audit_record(
        action="retention.dry_run" if dry_run else "retention.run",
        outcome="success",
        target=f"retention-run:{run.pk}",
        duration_ms=run.duration_ms,
        detail=removed,
    )
    return run
