"""A person's erasure: every trace of their identity removed, the audit trail keeping only the pseudonym."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from auditlog.context import disable_auditlog
from auditlog.models import LogEntry
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib.admin.models import LogEntry as AdminLogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone
from oauth2_provider.models import Application, Grant, IDToken, RefreshToken

from apps.compliance import audit
from apps.compliance.holdings import holdings
from apps.compliance.models import DataSubjectRequest, ExportArchive, SubjectKey
from apps.compliance.services.names import security_events_of, typed_as
from apps.core.errors import NotFound
from apps.security.events import security_counts_forget
from apps.security.models import Block, ClientPolicy, SecurityEvent
from apps.security.ratelimits import rate_limits_forget
from apps.security.services import token_revoke_all

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


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
    user_id = user.pk
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
        counts["security_events"] = _security_events_anonymise(user=user)
        counts["blocks"] = _blocks_delete(user_id)
        counts["sign_in_records"] = _sign_ins_delete(user=user)
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
    security_counts_forget(user_id=user_id)


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


def _blocks_delete(user_id: int) -> int:
    """A block of the person names her by her id: it goes with her (a block protects no one from an erased
    account), with its django-auditlog history: every entry of it (placed, lifted, deleted) holds her id, in its
    values or its title. A block deleted earlier is found by its first entry, whose values name her. The deletion
    is not recorded."""
    hers = Block.objects.filter(target=Block.Target.USER, value=str(user_id))
    pks = {str(pk) for pk in hers.values_list("pk", flat=True)}
    with disable_auditlog():
        deleted = hers.delete()[0]
    histories = LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(Block))
    pks |= {
        entry.object_pk
        for entry in histories.only("object_pk", "changes").iterator()
        if _names_user(entry.changes or {}, user_id)
    }
    histories.filter(object_pk__in=pks).delete()
    return deleted


def _names_user(changes: dict[str, Any], user_id: int) -> bool:
    """Whether a block's django-auditlog entry ({"field": [old, new]}) sets or clears a block of this user."""
    return Block.Target.USER in changes.get("target", []) and str(user_id) in changes.get("value", [])


def _security_events_anonymise(*, user: AbstractBaseUser) -> int:
    """The person's security events stay (they count toward what happened) without her: no link, no address, no
    detail. A failed sign-in under her name or e-mail is stored with no user, its detail naming her: anonymised too."""
    return SecurityEvent.objects.filter(security_events_of(user)).update(user=None, ip=None, detail={})


def _sign_ins_delete(*, user: AbstractBaseUser) -> int:
    """django-axes' records of sign-ins and failed sign-ins under the person's name or e-mail, with their
    addresses (whatever case was typed)."""
    return sum(
        model.objects.filter(typed_as(user, "username")).delete()[0]
        for model in (AccessAttempt, AccessLog, AccessFailureLog)
    )


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
    """Her sessions, expired ones too: nothing clears expired sessions from the table, and each still names her."""
    doomed = [s.session_key for s in Session.objects.iterator() if s.get_decoded().get("_auth_user_id") == str(user_id)]
    return Session.objects.filter(session_key__in=doomed).delete()[0]
