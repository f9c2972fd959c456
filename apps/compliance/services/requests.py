"""Data-subject requests: what is held about a person, and filing, approving, cancelling and running requests."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from axes.models import AccessAttempt, AccessLog
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone
from oauth2_provider.models import AccessToken, Grant, RefreshToken

from apps.compliance import audit
from apps.compliance.holdings import holdings
from apps.compliance.models import AuditEvent, DataSubjectRequest, SubjectKey
from apps.compliance.services.erasure import subject_erase
from apps.compliance.services.export import subject_export_build
from apps.compliance.services.names import security_events_of, typed_as
from apps.core.errors import ApplicationError
from apps.security.models import SecurityEvent
from apps.security.selectors import applications_authorised

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

logger = logging.getLogger(__name__)

RESPONSE_DEADLINE = timedelta(days=30)


class RequestRefused(ApplicationError):
    code = "invalid_request"
    http_status = 400


# --- What is held -------------------------------------------------------------------------------------------------


def subject_inventory(*, user: AbstractBaseUser) -> dict[str, int]:
    """How many records of each category are held about the person (first those the other apps hold: the
    registered holdings)."""
    subject = SubjectKey.objects.filter(user=user).first()
    held = {category: count for holding in holdings() for category, count in holding.inventory(user).items()}
    return {
        **held,
        "oauth_tokens": AccessToken.objects.filter(user=user).count() + RefreshToken.objects.filter(user=user).count(),
        "oauth_grants": Grant.objects.filter(user=user).count(),
        "oauth_clients": len(applications_authorised(user=user)),
        "audit_events": AuditEvent.objects.filter(actor=subject.pseudonym).count() if subject else 0,
        "security_events": SecurityEvent.objects.filter(security_events_of(user)).count(),
        "sign_ins": AccessLog.objects.filter(typed_as(user, "username")).count(),
        "failed_sign_ins": AccessAttempt.objects.filter(typed_as(user, "username")).count(),
        "privacy_requests": DataSubjectRequest.objects.filter(subject=user).count(),
    }


# --- Requests -----------------------------------------------------------------------------------------------------


def subject_request_create(
    *,
    subject: AbstractBaseUser,
    kind: str,
    password: str | None = None,
    via: str = "privacy page",
    handled_by: AbstractBaseUser | None = None,
) -> DataSubjectRequest:
    """File a request. The person's own export is due at once; the person's own erasure needs their password and
    is due after the grace period (ERASURE_GRACE_HOURS) unless cancelled. A request an administrator files for
    someone waits for approval. The caller hands a request due now to a worker (apps.compliance.tasks.
    subject_request_start): this layer sits below the tasks and does not start them."""
    if kind not in DataSubjectRequest.Kind.values:
        raise RequestRefused(f"Unknown request kind {kind!r}: use 'export' or 'erasure'.")
    by_subject = handled_by is None
    if kind == DataSubjectRequest.Kind.ERASURE and by_subject and not subject.check_password(password or ""):
        raise RequestRefused(
            "The password is not correct; erasure needs the account's password.", extra={"field": "password"}
        )
    pseudonym = audit.subject_for(subject).pseudonym
    with transaction.atomic():
        # The same request asked twice at once (a double click, two tabs, a retrying client) must be filed once:
        # the person's row is locked while her open requests are checked, so the second filing waits for the
        # first to commit and then finds it open.
        get_user_model().objects.select_for_update().filter(pk=subject.pk).first()
        if DataSubjectRequest.objects.filter(subject=subject, kind=kind, status__in=DataSubjectRequest.OPEN).exists():
            raise RequestRefused(f"An {kind} request is already open for this account.")
        now = timezone.now()
        if not by_subject:
            status, scheduled_for = DataSubjectRequest.Status.PENDING, None
        elif kind == DataSubjectRequest.Kind.ERASURE:
            status = DataSubjectRequest.Status.SCHEDULED
            scheduled_for = now + timedelta(hours=settings.ERASURE_GRACE_HOURS)
        else:
            status, scheduled_for = DataSubjectRequest.Status.SCHEDULED, now
        request = DataSubjectRequest.objects.create(
            subject=subject,
            subject_pseudonym=pseudonym,
            kind=kind,
            status=status,
            requested_at=now,
            due_at=now + RESPONSE_DEADLINE,
            scheduled_for=scheduled_for,
            via=via,
            handled_by=handled_by,
            filed_by=handled_by,
        )
    # Filed by an administrator: the administrator's act, naming the person by pseudonym (it is not her activity).
    audit.audit_record(
        action=f"privacy.{kind}_requested",
        outcome=status,
        user=handled_by or subject,
        target=f"request:{request.pk}",
        detail=None if by_subject else {"subject": request.subject_pseudonym},
    )
    return request


def subject_request_approve(*, request: DataSubjectRequest, by: AbstractBaseUser, run_now: bool = False) -> None:
    """An administrator approves a request: it is due at once, or after the erasure grace period. As after
    subject_request_create, the caller hands a request due now to a worker (apps.compliance.tasks)."""
    if request.status not in (DataSubjectRequest.Status.PENDING, DataSubjectRequest.Status.SCHEDULED):
        raise RequestRefused(f"Request #{request.pk} is {request.get_status_display()}; it cannot be approved.")
    now = timezone.now()
    grace = timedelta(hours=settings.ERASURE_GRACE_HOURS)
    if run_now or request.kind == DataSubjectRequest.Kind.EXPORT:
        request.scheduled_for = now
    elif request.scheduled_for is None:
        request.scheduled_for = now + grace
    request.status = DataSubjectRequest.Status.SCHEDULED
    request.handled_by = by
    request.save(update_fields=["status", "scheduled_for", "handled_by"])
    audit.audit_record(
        action=f"privacy.{request.kind}_approved", outcome="scheduled", user=by, target=f"request:{request.pk}"
    )


def subject_request_cancel(*, request: DataSubjectRequest, by: AbstractBaseUser) -> None:
    """Cancel a request that has not started (the person during the grace period, or an administrator)."""
    with transaction.atomic():
        locked = DataSubjectRequest.objects.select_for_update().get(pk=request.pk)
        if locked.status not in (DataSubjectRequest.Status.PENDING, DataSubjectRequest.Status.SCHEDULED):
            raise RequestRefused(
                f"Request #{locked.pk} is {locked.get_status_display()}; it can no longer be cancelled."
            )
        locked.status = DataSubjectRequest.Status.CANCELLED
        locked.completed_at = timezone.now()
        if by.pk != locked.subject_id:
            locked.handled_by = by
        locked.save(update_fields=["status", "completed_at", "handled_by"])
    request.refresh_from_db()
    audit.audit_record(
        action=f"privacy.{request.kind}_cancelled", outcome="cancelled", user=by, target=f"request:{request.pk}"
    )


def subject_request_is_due(*, request: DataSubjectRequest) -> bool:
    """Whether the request waits only for a worker: scheduled, and its time has come (as subject_requests_run_due
    finds them)."""
    return (
        request.status == DataSubjectRequest.Status.SCHEDULED
        and request.scheduled_for is not None
        and request.scheduled_for <= timezone.now()
    )


class DueRequestsFailed(Exception):
    """Some of the due requests failed (each is recorded as failed, logged and audited); the others ran."""


def subject_requests_run_due() -> int:
    """Run every scheduled request whose time has come (the periodic task). Returns how many; if any failed, raises
    DueRequestsFailed naming them once every other due request has run: one person's failing request must not hold
    up the others until the next run."""
    due = (
        DataSubjectRequest.objects.filter(status=DataSubjectRequest.Status.SCHEDULED, scheduled_for__lte=timezone.now())
        .order_by("scheduled_for", "pk")  # the longest waiting first
        .values_list("pk", flat=True)
    )
    count, failed = 0, []
    for pk in list(due):
        try:
            subject_request_run(request_id=pk)
        except (OperationalError, InterfaceError):
            raise  # the database is gone: the next requests would fail alike
        except Exception as exc:  # subject_request_run recorded it as failed, with its reason
            failed.append(f"#{pk} ({type(exc).__name__})")
        count += 1
    if failed:
        raise DueRequestsFailed(
            f"{len(failed)} of {count} due request(s) failed: {', '.join(failed)}; each is marked failed with its "
            "reason in the admin (Data-subject requests), and the others ran."
        )
    return count


def subject_request_run(*, request_id: int) -> DataSubjectRequest | None:
    """Run one scheduled request, once: the row is claimed under a lock, so two workers cannot both run it."""
    with transaction.atomic():
        request = DataSubjectRequest.objects.select_for_update().filter(pk=request_id).first()
        if request is None or request.status != DataSubjectRequest.Status.SCHEDULED:
            return request  # cancelled meanwhile, or already run
        request.status = DataSubjectRequest.Status.RUNNING
        request.save(update_fields=["status"])
    try:
        if request.kind == DataSubjectRequest.Kind.EXPORT:
            subject_export_build(request=request)
        else:
            subject_erase(request=request)
    except Exception as exc:
        failed = DataSubjectRequest.objects.filter(pk=request.pk, status=DataSubjectRequest.Status.RUNNING).update(
            status=DataSubjectRequest.Status.FAILED, note=f"failed: {type(exc).__name__}"[:500]
        )
        if not failed:  # an erasure cancelled it while it ran (subject_erase): what it built is thrown away
            request.refresh_from_db()
            return request
        logger.exception("data-subject request %s failed", request.pk)
        audit.audit_record(action=f"privacy.{request.kind}", outcome="failed", target=f"request:{request.pk}")
        raise
    request.refresh_from_db()
    return request
