"""Data-subject rights: what is held about a person, their export, their erasure, and the requests for them."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from auditlog.context import disable_auditlog
from auditlog.models import LogEntry
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.conf import settings
from django.contrib.admin.models import LogEntry as AdminLogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application, Grant, IDToken, RefreshToken

from apps.compliance import audit
from apps.compliance.holdings import Exported, holdings
from apps.compliance.models import AuditEvent, DataSubjectRequest, ExportArchive, RetentionPolicy, SubjectKey
from apps.core.errors import ApplicationError, NotFound
from apps.security.models import Block, ClientPolicy, SecurityEvent
from apps.security.ratelimits import rate_limits_forget
from apps.security.selectors import applications_authorised
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
        "oauth_clients": len(applications_authorised(user=user)),
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
        raise RequestRefused(
            "The password is not correct; erasure needs the account's password.", extra={"field": "password"}
        )
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


# --- Export -------------------------------------------------------------------------------------------------------


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def _filed_by(request: DataSubjectRequest) -> dict[str, Any]:
    """Who filed the request, as the export tells the person."""
    if request.filed_by_administrator:
        name = request.filed_by.get_username() if request.filed_by else None
        return {"by": "administrator", "administrator": name, "via": request.via, "at": _iso(request.requested_at)}
    return {"by": "you", "via": request.via, "at": _iso(request.requested_at)}


def _oauth_tokens(user: AbstractBaseUser) -> list[dict[str, Any]]:
    """Every access and refresh token of the person, described, never the token itself (nor its checksum)."""
    now = timezone.now()
    described = [
        {
            "kind": "access token",
            "application": t.application.name if t.application else None,
            "client_id": t.application.client_id if t.application else None,
            "scopes": t.scope.split(),
            "created": _iso(t.created),
            "expires": _iso(t.expires),
            "expired": t.expires <= now,
            # DOT deletes a revoked access token: one still held is not revoked.
            "revoked": False,
        }
        for t in AccessToken.objects.filter(user=user).select_related("application").order_by("created", "pk")
    ]
    refresh = RefreshToken.objects.filter(user=user).select_related("application", "access_token")
    described += [
        {
            "kind": "refresh token",
            "application": t.application.name,
            "client_id": t.application.client_id,
            "scopes": t.access_token.scope.split() if t.access_token else [],
            "created": _iso(t.created),
            "expires": None,  # a refresh token lasts until it is used (rotated) or revoked
            "revoked": t.revoked is not None,
            "revoked_at": _iso(t.revoked),
        }
        for t in refresh.order_by("created", "pk")
    ]
    return described


def _readme(user: AbstractBaseUser, request: DataSubjectRequest, counts: dict[str, int], generated: str) -> str:
    filed = _filed_by(request)
    if filed["by"] == "administrator":
        who = f"an administrator ({filed['administrator'] or 'whose account no longer exists'}) filed it for you"
    else:
        who = f"you filed it ({request.via})"
    lines = [
        "Your data on the music21 platform",
        "",
        f"Account: {user.get_username()}",
        f"Request #{request.pk}: {who} on {request.requested_at:%d %B %Y at %H:%M} UTC.",
        f"Generated: {generated}",
        "",
        "What is in this archive (manifest.json describes every file):",
        "",
        "- scores/ and derived_scores/: each score as MusicXML (<id>.musicxml), written by music21 from the stored",
        "  music; a score you gave in another format is also kept exactly as you gave it, under originals/.",
        "  Scores imported from the music21 corpus are written out as the music itself; their corpus path is in",
        "  the manifest.",
        "- oauth_clients.json, oauth_tokens.json, oauth_grants.json: the applications you authorised, every token",
        "  (application, permissions, dates, whether revoked or expired; never the token itself) and every",
        "  authorization code not yet exchanged.",
        "- audit_events.json, security_events.json: the records about your activity.",
        "- account.json, privacy_requests.json: your account and your privacy requests, with who filed each.",
        "",
        "Counts:",
        *[f"  {category}: {count}" for category, count in counts.items()],
        "",
    ]
    return "\n".join(lines)


def subject_export_build(*, request: DataSubjectRequest) -> ExportArchive:
    """Build the person's ZIP: a README and a JSON manifest (with who filed the request), what the registered
    holdings write (each score as MusicXML, with its original), their OAuth clients, every token and grant
    (metadata, never secrets), their security events and the audit events about them.

    An erasure that started meanwhile cancels the export (subject_erase): the archive is then thrown away rather
    than stored."""
    user = request.subject
    if user is None:
        raise NotFound(f"The subject of request #{request.pk} no longer exists.")
    subject = audit.subject_for(user)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        exported: dict[str, Exported] = {holding.name: holding.export(user, archive) for holding in holdings()}
        grants = Grant.objects.filter(user=user).select_related("application").order_by("created", "pk")
        clients = Application.objects.filter(
            Q(pk__in=AccessToken.objects.filter(user=user).values("application_id"))
            | Q(pk__in=RefreshToken.objects.filter(user=user).values("application_id"))
            | Q(pk__in=grants.values("application_id"))
            | Q(user=user)
        ).order_by("pk")
        data: dict[str, Any] = {
            "account": {
                "username": user.get_username(),
                "email": getattr(user, "email", ""),
                "date_joined": _iso(getattr(user, "date_joined", None)),
                "last_login": _iso(user.last_login),
            },
            "oauth_clients": [
                {
                    "client_id": c.client_id,
                    "name": c.name,
                    "client_type": c.client_type,
                    "created": _iso(c.created),
                    "registered_by_you": c.user_id == user.pk,
                }
                for c in clients
            ],
            "oauth_tokens": _oauth_tokens(user),
            "oauth_grants": [
                {
                    "kind": "authorization code",
                    "application": g.application.name,
                    "client_id": g.application.client_id,
                    "scopes": g.scope.split(),
                    "created": _iso(g.created),
                    "expires": _iso(g.expires),
                }
                for g in grants
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
                {
                    "id": r.pk,
                    "kind": r.kind,
                    "status": r.status,
                    "requested_at": _iso(r.requested_at),
                    "filed_by": _filed_by(r),
                    "note": r.note,
                }
                for r in DataSubjectRequest.objects.filter(subject=user).select_related("filed_by")
            ],
        }
        categories = {category: entry for held in exported.values() for category, entry in held.categories.items()}
        for category, content in data.items():
            archive.writestr(f"{category}.json", json.dumps(content, indent=2, default=str))
            count = 1 if isinstance(content, dict) else len(content)
            categories[category] = {"count": count, "files": [f"{category}.json"]}
        generated = _iso(timezone.now()) or ""
        manifest = {
            "format": "music21-platform personal data export, version 2",
            "subject": user.get_username(),
            "request": {"id": request.pk, "kind": request.kind, "filed_by": _filed_by(request)},
            "generated_at": generated,
            "categories": categories,
            **{key: value for held in exported.values() for key, value in held.manifest.items()},
        }
        archive.writestr("manifest.json", json.dumps(manifest, indent=2))
        counts = {category: entry["count"] for category, entry in categories.items()}
        archive.writestr("README.txt", _readme(user, request, counts, generated))
    content = buffer.getvalue()
    now = timezone.now()
    policy = RetentionPolicy.objects.filter(category=RetentionPolicy.Category.EXPORT_FILES, enabled=True).first()
    with transaction.atomic():
        locked = DataSubjectRequest.objects.select_for_update().get(pk=request.pk)
        if locked.status != DataSubjectRequest.Status.RUNNING:
            raise NotFound(f"Request #{request.pk} was {locked.get_status_display()} while it ran: {locked.note}")
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


SUPERSEDED = "superseded by erasure"


def subject_erase(*, request: DataSubjectRequest) -> None:
    """Erase the person: what the registered holdings keep of them (their scores), tokens, grants, clients they
    own, sessions, sign-in records and their account; every row elsewhere that names them (failed sign-ins under
    their name or e-mail, the admin's and django-auditlog's history of their account) goes or is anonymised;
    their security events are kept but anonymised; their audit events are kept but unlinked (their key is
    destroyed). Their other open requests (an export) are not deleted but kept as records, cancelled as
    superseded by the erasure, which its own note and audit event say. Once committed, each holding finishes its
    part (caches everywhere drop their parsed scores). The erasure itself is audited under the pseudonym."""
    user = request.subject
    if user is None:
        raise NotFound(f"The subject of request #{request.pk} no longer exists.")
    user_id, username = user.pk, user.get_username()
    names = [name for name in {username, getattr(user, "email", "")} if name]
    subject = audit.subject_for(user)
    now = timezone.now()
    with transaction.atomic():
        superseded = _requests_supersede(user=user, erasure=request, at=now)
        erased = {holding.name: holding.erase(user) for holding in holdings()}
        counts: dict[str, Any] = {name: done.count for name, done in erased.items()}
        counts["tokens"] = token_revoke_all(user=user)
        counts["refresh_tokens"] = RefreshToken.objects.filter(user=user).delete()[0]
        counts["grants"] = Grant.objects.filter(user=user).delete()[0]
        IDToken.objects.filter(user=user).delete()
        counts["clients"] = _own_clients_delete(user=user)
        counts["security_events"] = _security_events_anonymise(user=user, names=names)
        # A block of the person names her by her id: it goes with her (a block protects no one from an erased account).
        counts["blocks"] = Block.objects.filter(target=Block.Target.USER, value=str(user_id)).delete()[0]
        counts["sign_in_records"] = _sign_ins_delete(names)
        _history_forget(user_id)
        counts["sessions"] = _sessions_delete(user_id)
        ExportArchive.objects.filter(request__subject=user).delete()
        counts["requests_cancelled"] = [pk for pk, _ in superseded]
        note = "Erased."
        if superseded:
            listed = ", ".join(f"#{pk} ({kind})" for pk, kind in superseded)
            note += f" Open request {listed} cancelled: {SUPERSEDED}."
        DataSubjectRequest.objects.filter(pk=request.pk).update(
            status=DataSubjectRequest.Status.COMPLETED, completed_at=now, note=note[:500]
        )
        # Record under the pseudonym before the key that links it to the person is destroyed.
        for pk, kind in superseded:
            audit.audit_record(
                action=f"privacy.{kind}_cancelled",
                outcome="cancelled",
                subject=subject,
                target=f"request:{pk}",
                detail={"reason": SUPERSEDED, "erasure": request.pk},
            )
        audit.audit_record(
            action="privacy.erasure",
            outcome="completed",
            subject=subject,
            target=f"request:{request.pk}",
            detail=counts,
        )
        SubjectKey.objects.filter(user_id=user_id).delete()
        # django-auditlog would record the account's deletion with its name, e-mail and join date: the one
        # history of the person that must not be written. The erasure's own audit event above records it.
        with disable_auditlog():
            get_user_model().objects.filter(pk=user_id).delete()
    audit.subject_forget(user_id)
    for done in erased.values():
        done.after()
    rate_limits_forget(user_id=user_id)


def _requests_supersede(*, user: AbstractBaseUser, erasure: DataSubjectRequest, at: Any) -> list[tuple[int, str]]:
    """Cancel the person's other open requests (an export waiting for approval, scheduled or running: its archive
    would outlive the person) and keep them as records saying why. Returns (id, kind) of each."""
    open_requests = (
        DataSubjectRequest.objects.select_for_update()
        .filter(subject=user, status__in=DataSubjectRequest.OPEN)
        .exclude(pk=erasure.pk)
    )
    superseded = [(r.pk, r.kind) for r in open_requests]
    DataSubjectRequest.objects.filter(pk__in=[pk for pk, _ in superseded]).update(
        status=DataSubjectRequest.Status.CANCELLED,
        completed_at=at,
        note=f"Cancelled on {at:%d %B %Y at %H:%M} UTC: {SUPERSEDED} (request #{erasure.pk}).",
    )
    return superseded


def _own_clients_delete(*, user: AbstractBaseUser) -> int:
    """The OAuth clients the person registered go, with their history: django-auditlog's rows of the client and its
    policy hold what she named and configured (the name, the redirect URIs), and the deletion is not recorded again."""
    owned = Application.objects.filter(user=user)
    histories = [
        (ContentType.objects.get_for_model(Application), [str(pk) for pk in owned.values_list("pk", flat=True)]),
        (
            ContentType.objects.get_for_model(ClientPolicy),
            [str(pk) for pk in ClientPolicy.objects.filter(application__user=user).values_list("pk", flat=True)],
        ),
    ]
    with disable_auditlog():
        deleted = owned.delete()[0]
    for content_type, pks in histories:
        LogEntry.objects.filter(content_type=content_type, object_pk__in=pks).delete()
    return deleted


def _security_events_anonymise(*, user: AbstractBaseUser, names: list[str]) -> int:
    """The person's security events stay (they count toward what happened) without her: no link, no address, no
    detail. A failed sign-in under her name or e-mail is stored with no user, its detail naming her: anonymised too."""
    typed = Q()
    for name in names:
        typed |= Q(detail__username__iexact=name)
    return SecurityEvent.objects.filter(Q(user=user) | typed).update(user=None, ip=None, detail={})


def _sign_ins_delete(names: list[str]) -> int:
    """django-axes' records of sign-ins and failed sign-ins under the person's name or e-mail, with their
    addresses (whatever case was typed)."""
    deleted = 0
    for model in (AccessAttempt, AccessLog, AccessFailureLog):
        typed = Q()
        for name in names:
            typed |= Q(username__iexact=name)
        deleted += model.objects.filter(typed).delete()[0]
    return deleted


def _history_forget(user_id: int) -> None:
    """The histories of the account itself hold its name and e-mail: django-auditlog's (every change, with the
    values) and the admin's (each entry's object_repr is the username). Both go, and the changes the person made
    to other records lose their author's address (those rows stay: they are the records' history)."""
    user_type = ContentType.objects.get_for_model(get_user_model())
    LogEntry.objects.filter(content_type=user_type, object_pk=str(user_id)).delete()
    LogEntry.objects.filter(actor_id=user_id).update(actor=None, remote_addr=None, actor_email=None)
    AdminLogEntry.objects.filter(content_type=user_type, object_id=str(user_id)).delete()
    # The entries of the person's own admin work (a staff member) go with her account (their user is on CASCADE).


def _sessions_delete(user_id: int) -> int:
    doomed = [
        s.session_key
        for s in Session.objects.filter(expire_date__gt=timezone.now()).iterator()
        if s.get_decoded().get("_auth_user_id") == str(user_id)
    ]
    return Session.objects.filter(session_key__in=doomed).delete()[0]
