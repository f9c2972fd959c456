"""Data-subject rights: what is held about a person, their export, their erasure, and the requests for them."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from auditlog.models import LogEntry
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application, Grant, IDToken, RefreshToken

from apps.compliance import audit
from apps.compliance.holdings import Exported, holdings
from apps.compliance.models import AuditEvent, DataSubjectRequest, ExportArchive, RetentionPolicy, SubjectKey
from apps.core.errors import ApplicationError, NotFound
from apps.security.models import Block, SecurityEvent
from apps.security.ratelimits import rate_limits_forget
from apps.security.services import token_revoke_all

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
        "oauth_clients": Application.objects.filter(accesstoken__user=user).distinct().count(),
        "audit_events": AuditEvent.objects.filter(actor=subject.pseudonym).count() if subject else 0,
        "security_events": SecurityEvent.objects.filter(user=user).count(),
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
        raise RequestRefused("The password is not correct; erasure needs the account's password.")
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
        subject_pseudonym=audit.subject_for(subject).pseudonym,
        kind=kind,
        status=status,
        requested_at=now,
        due_at=now + RESPONSE_DEADLINE,
        scheduled_for=scheduled_for,
        via=via,
        handled_by=handled_by,
    )
    audit.audit_record(action=f"privacy.{kind}_requested", outcome=status, user=subject, target=f"request:{request.pk}")
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


def subject_requests_run_due() -> int:
    """Run every scheduled request whose time has come (the periodic task). Returns how many."""
    due = DataSubjectRequest.objects.filter(
        status=DataSubjectRequest.Status.SCHEDULED, scheduled_for__lte=timezone.now()
    ).values_list("pk", flat=True)
    count = 0
    for pk in list(due):
        subject_request_run(request_id=pk)
        count += 1
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
        logger.exception("data-subject request %s failed", request.pk)
        DataSubjectRequest.objects.filter(pk=request.pk).update(
            status=DataSubjectRequest.Status.FAILED, note=f"failed: {type(exc).__name__}"[:500]
        )
        audit.audit_record(action=f"privacy.{request.kind}", outcome="failed", target=f"request:{request.pk}")
        raise
    request.refresh_from_db()
    return request


# --- Export -------------------------------------------------------------------------------------------------------


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def subject_export_build(*, request: DataSubjectRequest) -> ExportArchive:
    """Build the person's ZIP: a JSON manifest, what the registered holdings write (every score source byte for
    byte), their OAuth clients, grants and tokens (metadata, never secrets), their security events and the audit
    events about them."""
    user = request.subject
    if user is None:
        raise NotFound(f"The subject of request #{request.pk} no longer exists.")
    subject = audit.subject_for(user)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        exported: dict[str, Exported] = {holding.name: holding.export(user, archive) for holding in holdings()}
        tokens = AccessToken.objects.filter(user=user).select_related("application")
        clients = Application.objects.filter(pk__in=tokens.values("application_id")).union(
            Application.objects.filter(user=user)
        )
        data: dict[str, Any] = {
            "account": {
                "username": user.get_username(),
                "email": getattr(user, "email", ""),
                "date_joined": _iso(getattr(user, "date_joined", None)),
                "last_login": _iso(user.last_login),
            },
            "oauth_clients": [
                {"client_id": c.client_id, "name": c.name, "client_type": c.client_type, "created": _iso(c.created)}
                for c in clients
            ],
            "oauth_tokens": [
                {
                    "client_id": t.application.client_id if t.application else None,
                    "scope": t.scope,
                    "created": _iso(t.created),
                    "expires": _iso(t.expires),
                }
                for t in tokens
            ],
            "oauth_grants": [
                {"client_id": g.application.client_id, "scope": g.scope, "created": _iso(g.created)}
                for g in Grant.objects.filter(user=user).select_related("application")
            ],
            "security_events": [
                {"kind": e.kind, "severity": e.severity, "ip": e.ip, "detail": e.detail, "at": _iso(e.created_at)}
                for e in SecurityEvent.objects.filter(user=user).order_by("created_at")
            ],
            "audit_events": [
                {
                    "at": _iso(e.created_at),
                    "action": e.action,
                    "target": e.target,
                    "outcome": e.outcome,
                    "client_id": e.client_id,
                    "ip": audit.ip_reveal(e, subject=subject),
                    "duration_ms": e.duration_ms,
                    "request_id": e.request_id,
                }
                for e in AuditEvent.objects.filter(actor=subject.pseudonym).order_by("id")
            ],
            "privacy_requests": [
                {"id": r.pk, "kind": r.kind, "status": r.status, "requested_at": _iso(r.requested_at)}
                for r in DataSubjectRequest.objects.filter(subject=user)
            ],
        }
        categories = {category: entry for held in exported.values() for category, entry in held.categories.items()}
        for category, content in data.items():
            archive.writestr(f"{category}.json", json.dumps(content, indent=2, default=str))
            count = 1 if isinstance(content, dict) else len(content)
            categories[category] = {"count": count, "files": [f"{category}.json"]}
        manifest = {
            "format": "music21-platform personal data export, version 1",
            "subject": user.get_username(),
            "request": request.pk,
            "generated_at": _iso(timezone.now()),
            "categories": categories,
            **{key: value for held in exported.values() for key, value in held.manifest.items()},
        }
        archive.writestr("manifest.json", json.dumps(manifest, indent=2))
    content = buffer.getvalue()
    now = timezone.now()
    policy = RetentionPolicy.objects.filter(category=RetentionPolicy.Category.EXPORT_FILES, enabled=True).first()
    with transaction.atomic():
        ExportArchive.objects.filter(request=request).delete()
        stored = ExportArchive.objects.create(
            request=request,
            content=content,
            size=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
            created_at=now,
            expires_at=now + timedelta(days=policy.days if policy else 7),
        )
        DataSubjectRequest.objects.filter(pk=request.pk).update(
            status=DataSubjectRequest.Status.COMPLETED, completed_at=now
        )
    audit.audit_record(
        action="privacy.export",
        outcome="completed",
        subject=subject,
        target=f"request:{request.pk}",
        detail={"bytes": len(content), **{name: held.count for name, held in exported.items()}},
    )
    return stored


def subject_export_download(*, request: DataSubjectRequest, by: AbstractBaseUser) -> ExportArchive:
    """The archive of a finished export, for its subject or a staff member, while it is offered."""
    if by.pk != request.subject_id and not by.is_staff:
        raise NotFound("No such export.")
    archive = ExportArchive.objects.filter(request=request, expires_at__gt=timezone.now()).first()
    if archive is None:
        raise NotFound(f"The export of request #{request.pk} is not ready, or no longer offered.")
    ExportArchive.objects.filter(pk=archive.pk).update(downloads=archive.downloads + 1)
    audit.audit_record(action="privacy.export_downloaded", outcome="success", user=by, target=f"request:{request.pk}")
    return archive


# --- Erasure ------------------------------------------------------------------------------------------------------


def subject_erase(*, request: DataSubjectRequest) -> None:
    """Erase the person: what the registered holdings keep of them (their scores), tokens, grants, clients they
    own, sessions, sign-in records and their account; their security events are kept but anonymised; their audit
    events are kept but unlinked (their key is destroyed); once committed, each holding finishes its part (caches
    everywhere drop their parsed scores). The erasure itself is audited."""
    user = request.subject
    if user is None:
        raise NotFound(f"The subject of request #{request.pk} no longer exists.")
    user_id, username = user.pk, user.get_username()
    subject = audit.subject_for(user)
    with transaction.atomic():
        erased = {holding.name: holding.erase(user) for holding in holdings()}
        counts = {name: done.count for name, done in erased.items()}
        counts["tokens"] = token_revoke_all(user=user)
        counts["refresh_tokens"] = RefreshToken.objects.filter(user=user).delete()[0]
        counts["grants"] = Grant.objects.filter(user=user).delete()[0]
        IDToken.objects.filter(user=user).delete()
        counts["clients"] = Application.objects.filter(user=user).delete()[0]
        counts["security_events"] = SecurityEvent.objects.filter(user=user).update(user=None, ip=None, detail={})
        # A block of the person names her by her id: it goes with her (a block protects no one from an erased account).
        counts["blocks"] = Block.objects.filter(target=Block.Target.USER, value=str(user_id)).delete()[0]
        for model in (AccessAttempt, AccessLog, AccessFailureLog):
            model.objects.filter(username=username).delete()
        _auditlog_forget(user_id)
        counts["sessions"] = _sessions_delete(user_id)
        ExportArchive.objects.filter(request__subject=user).delete()
        DataSubjectRequest.objects.filter(pk=request.pk).update(
            status=DataSubjectRequest.Status.COMPLETED, completed_at=timezone.now()
        )
        # Record the erasure under the pseudonym before the key that links it to the person is destroyed.
        audit.audit_record(
            action="privacy.erasure",
            outcome="completed",
            subject=subject,
            target=f"request:{request.pk}",
            detail=counts,
        )
        SubjectKey.objects.filter(user_id=user_id).delete()
        get_user_model().objects.filter(pk=user_id).delete()
    audit.subject_forget(user_id)
    for done in erased.values():
        done.after()
    rate_limits_forget(user_id=user_id)


def _auditlog_forget(user_id: int) -> None:
    """django-auditlog keeps the history of the account itself (its e-mail, its name): drop it, and the address
    of the changes the person made."""
    user_type = ContentType.objects.get_for_model(get_user_model())
    LogEntry.objects.filter(content_type=user_type, object_pk=str(user_id)).delete()
    LogEntry.objects.filter(actor_id=user_id).update(actor=None, remote_addr=None, actor_email=None)


def _sessions_delete(user_id: int) -> int:
    doomed = [
        s.session_key
        for s in Session.objects.filter(expire_date__gt=timezone.now()).iterator()
        if s.get_decoded().get("_auth_user_id") == str(user_id)
    ]
    return Session.objects.filter(session_key__in=doomed).delete()[0]
