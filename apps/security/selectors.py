"""Reads of the OAuth records: which applications a person authorised, and what each of them holds."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from django.db.models import Max
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application, Grant, RefreshToken

from apps.compliance.audit import subject_for
from apps.compliance.models import AuditEvent
from apps.security.scopes import DESCRIPTIONS
from apps.security.validators import is_registration_token

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


@dataclass(frozen=True)
class AuthorisedApplication:
    """An application that can act for the person, as the privacy page shows it."""

    application: Application
    scopes: tuple[str, ...]
    first_authorised: datetime
    last_used: datetime
    live_tokens: int  # access tokens not yet expired

    @property
    def name(self) -> str:
        return self.application.name or self.application.client_id

    @property
    def scopes_described(self) -> list[tuple[str, str]]:
        return [(scope, DESCRIPTIONS.get(scope, "")) for scope in self.scopes]


def applications_authorised(*, user: AbstractBaseUser) -> list[AuthorisedApplication]:
    """Every application the person authorised that still holds something of that consent: an access token (live
    or expired: a refresh can still follow), a refresh token not revoked, or an authorization code not yet
    exchanged. Revoked refresh tokens stay in the database as DOT's reuse detection needs them, but they authorise
    nothing, so an application left with only those is not listed. Newest use first.

    Last use is the latest audit event the application's calls wrote for the person (tool calls carry the client
    id), or else the newest of its tokens: DOT records no last use of a token."""
    access = [t for t in AccessToken.objects.filter(user=user) if not is_registration_token(t.scope)]
    refresh = list(RefreshToken.objects.filter(user=user, revoked__isnull=True))
    grants = list(Grant.objects.filter(user=user))
    app_ids = {row.application_id for row in (*access, *refresh, *grants) if row.application_id is not None}
    if not app_ids:
        return []
    subject = subject_for(user)
    used: dict[str, datetime] = {}
    clients = dict(Application.objects.filter(pk__in=app_ids).values_list("pk", "client_id"))
    if subject is not None:
        used = dict(
            AuditEvent.objects.filter(actor=subject.pseudonym, client_id__in=clients.values())
            .values("client_id")
            .annotate(last=Max("created_at"))
            .values_list("client_id", "last")
        )
    # "First authorised" counts the revoked refresh tokens too: they are the same person's earlier consents.
    first: dict[int, datetime] = {}
    for token in RefreshToken.objects.filter(user=user, application_id__in=app_ids).only("application_id", "created"):
        first[token.application_id] = min(first.get(token.application_id, token.created), token.created)
    now = timezone.now()
    listed = []
    for application in Application.objects.filter(pk__in=app_ids):
        mine = [row for row in (*access, *refresh, *grants) if row.application_id == application.pk]
        created = [row.created for row in mine]
        scopes = {scope for row in mine if hasattr(row, "scope") for scope in row.scope.split()}
        # A refresh token carries no scope of its own: its access token (among `access`) or a later one does.
        newest = max(created)
        last_audited = used.get(application.client_id)
        listed.append(
            AuthorisedApplication(
                application=application,
                scopes=tuple(sorted(scopes)),
                first_authorised=min([*created, first.get(application.pk, newest)]),
                last_used=max(newest, last_audited) if last_audited else newest,
                live_tokens=sum(1 for t in access if t.application_id == application.pk and t.expires > now),
            )
        )
    return sorted(listed, key=lambda entry: entry.last_used, reverse=True)


def clients_named(client_ids: Iterable[str]) -> dict[str, tuple[str, int]]:
    """The name and primary key of each OAuth client among `client_ids` that still exists, in one query (lists of
    events name their clients by id)."""
    wanted = {client_id for client_id in client_ids if client_id}
    if not wanted:
        return {}
    named = Application.objects.filter(client_id__in=wanted).values_list("client_id", "name", "pk")
    return {client_id: (name, pk) for client_id, name, pk in named}
