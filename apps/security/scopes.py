"""The OAuth scopes of the platform and what each allows, in words shown to people on the consent page."""

from __future__ import annotations

from collections.abc import Iterable

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
