"""OAuth services: verifying a bearer token for the MCP endpoint, revoking tokens, disabling clients."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application, RefreshToken

from apps.compliance.audit import audit_record
from apps.security.models import ClientPolicy

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


@dataclass(frozen=True)
class VerifiedToken:
    user_id: int | None  # None for client-credentials tokens, which act for no user
    client_id: str
    scopes: frozenset[str]
    expires_at: datetime
    resource: str | None


def token_verify(*, raw_token: str, resource: str) -> VerifiedToken | None:
    """The token's grant if it is a live token of an enabled client, issued for `resource` (or for no particular
    resource); None otherwise. Tokens are stored as checksums, so this never compares secrets directly."""
    checksum = hashlib.sha256(raw_token.encode("utf-8")).hexdigest()
    token = (
        AccessToken.objects.select_related("application")
        .filter(token_checksum=checksum)
        .only("user_id", "scope", "expires", "resource", "application__client_id", "application__id")
        .first()
    )
    if token is None or token.is_expired() or token.application is None:
        return None
    if not token.allows_audience(resource):
        return None
    if ClientPolicy.objects.filter(application_id=token.application_id, disabled=True).exists():
        return None
    return VerifiedToken(
        user_id=token.user_id,
        client_id=token.application.client_id,
        scopes=frozenset(token.scope.split()),
        expires_at=token.expires,
        resource=token.resource[0] if token.resource else None,
    )


def token_revoke_all(*, user: AbstractBaseUser | None = None, application: Application | None = None) -> int:
    """Revoke every live token of a user, of a client, or of a user with a client. Returns how many."""
    if user is None and application is None:
        raise ValueError("token_revoke_all needs a user or an application")
    filters = {k: v for k, v in (("user", user), ("application", application)) if v is not None}
    with transaction.atomic():
        refreshed = RefreshToken.objects.filter(revoked__isnull=True, **filters)
        count = refreshed.update(revoked=timezone.now())
        count += AccessToken.objects.filter(**filters).delete()[0]
    return count


def client_disable(*, application: Application, reason: str = "") -> None:
    """Disable a client: it can no longer authorize or get tokens, and its tokens are revoked."""
    ClientPolicy.objects.update_or_create(
        application=application, defaults={"disabled": True, "disabled_reason": reason[:200]}
    )
    token_revoke_all(application=application)
    audit_record(action="oauth.client_disabled", outcome="success", target=f"client:{application.client_id}")


def client_enable(*, application: Application) -> None:
    ClientPolicy.objects.update_or_create(application=application, defaults={"disabled": False, "disabled_reason": ""})
    audit_record(action="oauth.client_enabled", outcome="success", target=f"client:{application.client_id}")
