"""The OAuth scopes of the platform and what each allows, in words shown to people on the consent page."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

READ = "music21:read"
WRITE = "music21:write"
ADMIN = "music21:admin"

DESCRIPTIONS = {
    READ: "See your scores and run analyses on them (key, harmony, voice leading, patterns), render and export them.",
    WRITE: (
        "Import new scores, create scores from yours (harmonisations, counterpoint, transpositions) and delete them."
    ),
    ADMIN: "Everything above, plus the server's operational statistics and compliance reports.",
}
ALL = frozenset(DESCRIPTIONS)


def has_scope(granted: Iterable[str], required: str | None) -> bool:
    """Whether `granted` allows `required`; the admin scope includes the others."""
    if required is None:
        return True
    granted = set(granted)
    return required in granted or ADMIN in granted


def admin_grantable(*, user: Any, grant_type: str | None = None) -> bool:
    """Whether a grant may carry music21:admin: only for an active staff account (verified by its second factor
    when consenting), never for client credentials (a client acts for no person, so no one's staff rights stand
    behind it)."""
    if grant_type == "client_credentials" or user is None:
        return False
    # At the consent page the person is the request's user, on which django-otp's middleware installs is_verified:
    # staff grant operator access only from a session verified by their second factor. The later steps (the
    # code's exchange, refreshes) carry the user of the stored grant, and rest on that consent.
    is_verified = getattr(user, "is_verified", None)
    if is_verified is not None and not is_verified():
        return False
    return bool(getattr(user, "is_staff", False) and getattr(user, "is_active", False))


def grantable(requested: Iterable[str], *, user: Any, grant_type: str | None = None) -> list[str]:
    """The requested scopes, in order, without those this grant may not carry."""
    may_admin = admin_grantable(user=user, grant_type=grant_type)
    return [scope for scope in requested if scope != ADMIN or may_admin]
