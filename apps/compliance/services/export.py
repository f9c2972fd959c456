"""A person's export: everything held about them in one ZIP, and its download."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from axes.models import AccessAttempt, AccessLog
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application, Grant, RefreshToken

from apps.compliance import audit
from apps.compliance.holdings import Exported, export_time, holdings
from apps.compliance.models import AuditEvent, DataSubjectRequest, ExportArchive, RetentionPolicy
from apps.compliance.services.names import security_events_of, typed_as
from apps.core.errors import NotFound
from apps.security.models import Block, SecurityEvent

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

# The audit actions of an administrator that name the person in `detail.subject`, besides the admin.* reads of her
# data: filing a request for her (services.requests.subject_request_create), downloading her export.
ADMINISTRATOR_ACTIONS = ("privacy.export_requested", "privacy.erasure_requested", "privacy.export_downloaded")


def administrator_access_to(pseudonyms: list[str]) -> Q:
    """The audit events of administrators' access to the data of the people with these pseudonyms: the admin.* reads
    of it and ADMINISTRATOR_ACTIONS, which name each person in `detail.subject`. The actions keep the JSON lookup
    to those few rows (the action's index)."""
    return (Q(action__startswith="admin.") | Q(action__in=ADMINISTRATOR_ACTIONS)) & Q(detail__subject__in=pseudonyms)


def _filed_by(request: DataSubjectRequest) -> dict[str, Any]:
    """Who filed the request, as the export tells the person."""
    if request.filed_by_administrator:
        name = request.filed_by.get_username() if request.filed_by else None
        return {
            "by": "administrator",
            "administrator": name,
            "via": request.via,
            "at": export_time(request.requested_at),
        }
    return {"by": "you", "via": request.via, "at": export_time(request.requested_at)}


def _oauth_tokens(user: AbstractBaseUser) -> list[dict[str, Any]]:
    """Every access and refresh token of the person, described, never the token itself (nor its checksum)."""
    now = timezone.now()
    described = [
        {
            "kind": "access token",
            "application": t.application.name if t.application else None,
            "client_id": t.application.client_id if t.application else None,
            "scopes": t.scope.split(),
            "created": export_time(t.created),
            "expires": export_time(t.expires),
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
            "created": export_time(t.created),
            "expires": None,  # a refresh token lasts until it is used (rotated) or revoked
            "revoked": t.revoked is not None,
            "revoked_at": export_time(t.revoked),
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
        "- analysis_results.json: the analysis answers kept for your scores (key, chords, harmony...), each with",
        "  its score, its tool and when it was first and last given.",
        "- oauth_clients.json, oauth_tokens.json, oauth_grants.json: the applications you authorised, every token",
        "  (application, permissions, dates, whether revoked or expired; never the token itself) and every",
        "  authorization code not yet exchanged.",
        "- audit_events.json, security_events.json: the records about your activity (the security events include",
        "  failed sign-ins under your name or e-mail address, whoever typed them).",
        "- administrator_events.json: what administrators did with your data (a score of yours they looked at, a",
        "  request they filed for you), from the audit trail.",
        "- sign_ins.json: each time you signed in: when, from which address and browser, and when you signed out.",
        "- failed_sign_ins.json: failed sign-ins under your name or e-mail address since the last one that",
        "  succeeded from the same address: how many, the last one's time, the address and browser.",
        "- account.json, privacy_requests.json: your account (with any block placed on it) and your privacy",
        "  requests, with who filed each.",
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
                # The name an administrator may have entered on the account (Django's user has no other).
                "first_name": getattr(user, "first_name", ""),
                "last_name": getattr(user, "last_name", ""),
                # Blocks of the account (after too many security events of hers), which the erasure deletes with it.
                "blocks": [
                    {
                        "reason": b.reason,
                        "from": export_time(b.created_at),
                        "until": export_time(b.until),
                        "lifted": b.lifted,
                    }
                    for b in Block.objects.filter(target=Block.Target.USER, value=str(user.pk)).order_by("created_at")
                ],
                "date_joined": export_time(getattr(user, "date_joined", None)),
                "last_login": export_time(user.last_login),
            },
            "oauth_clients": [
                {
                    "client_id": c.client_id,
                    "name": c.name,
                    "client_type": c.client_type,
                    "created": export_time(c.created),
                    "registered_by_you": c.user_id == user.pk,
                    # What she configured on a client of her own (another's is not hers to read).
                    **(
                        {"grant_type": c.authorization_grant_type, "redirect_uris": c.redirect_uris.split()}
                        if c.user_id == user.pk
                        else {}
                    ),
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
                    "created": export_time(g.created),
                    "expires": export_time(g.expires),
                }
                for g in grants
            ],
            "security_events": [
                {
                    "kind": e.kind,
                    "severity": e.severity,
                    "ip": e.ip,
                    "detail": e.detail,
                    "at": export_time(e.created_at),
                }
                for e in SecurityEvent.objects.filter(security_events_of(user)).order_by("created_at", "pk")
            ],
            "audit_events": [
                {
                    "at": export_time(e.created_at),
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
            # What administrators did with her data (read a score of hers, filed a request for her): their events,
            # which name her by pseudonym in `detail` (not as their actor), without the administrator's address.
            "administrator_events": [
                {"at": export_time(e.created_at), "action": e.action, "target": e.target, "outcome": e.outcome}
                for e in AuditEvent.objects.filter(administrator_access_to([subject.pseudonym])).order_by("id")
            ],
            # django-axes' record of each sign-in under her name or e-mail (the erasure deletes them with the account).
            "sign_ins": [
                {
                    "at": export_time(a.attempt_time),
                    "signed_out": export_time(a.logout_time),
                    "ip": a.ip_address,
                    "browser": a.user_agent,
                }
                for a in AccessLog.objects.filter(typed_as(user, "username")).order_by("attempt_time", "pk")
            ],
            # django-axes' count of failed sign-ins under her name or e-mail since the last that succeeded, per
            # address: what locks the name out (the erasure deletes them too).
            "failed_sign_ins": [
                {
                    "last_at": export_time(a.attempt_time),
                    "name_typed": a.username,
                    "failures": a.failures_since_start,
                    "ip": a.ip_address,
                    "browser": a.user_agent,
                }
                for a in AccessAttempt.objects.filter(typed_as(user, "username")).order_by("attempt_time", "pk")
            ],
            "privacy_requests": [
                {
                    "id": r.pk,
                    "kind": r.kind,
                    "status": r.status,
                    "requested_at": export_time(r.requested_at),
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
        generated = export_time(timezone.now()) or ""
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
    # Counted in the database: two downloads at once are both counted (a count read here would lose one).
    ExportArchive.objects.filter(pk=archive.pk).update(downloads=F("downloads") + 1)
    # A staff member's download is their access to everything held about her: it names her by pseudonym, as the
    # admin's reads of her data do, so that her next export and the audit list's search for her show it.
    audit.audit_record(
        action="privacy.export_downloaded",
        outcome="success",
        user=by,
        target=f"request:{request.pk}",
        detail=None if by.pk == request.subject_id else {"subject": request.subject_pseudonym},
    )
    return archive
