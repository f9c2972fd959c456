"""The registry of personal data that apps above compliance hold (the tools: people's scores).

Compliance answers for a person's data (inventory, export, erasure), for retention and for the reports, but the apps
that keep such data sit above it: like the admin site's registry, each of them registers a `Holding` from its
AppConfig.ready(), and compliance reaches the data only through the holding's callables, so its imports point down.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


def export_time(value: datetime | None) -> str | None:
    """A time as every export writes it (ISO 8601), or None."""
    return value.isoformat() if value else None


@dataclass(frozen=True)
class Exported:
    """What a holding wrote into a person's export archive.

    `categories`: the manifest's entry per category, {"count": n, "files": [names in the archive]};
    `manifest`: further top-level manifest entries (the scores: their details); `count`: the records exported, for
    the audit event."""

    categories: dict[str, dict[str, Any]]
    manifest: dict[str, Any] = field(default_factory=dict)
    count: int = 0


@dataclass(frozen=True)
class Erased:
    """What a holding erased inside the erasure's transaction, and what it must do once that transaction is over
    (a copy outside the database, such as parsed scores in the processes' memory, is dropped only once the rows are
    gone for good, or another process could read the rows again and keep a fresh copy)."""

    count: int
    after: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class Holding:
    """One kind of personal data an app keeps, under `name` (the key of its counts in the erasure's and the
    export's audit events), answering for `categories` (the inventory's, the export's and the retention policies'
    names: a category with a retention policy is a RetentionPolicy.Category value).

    - `inventory(user)`: how many records of each category the person has;
    - `export(user, archive)`: write the person's records into the ZIP being built;
    - `erase(user)`: delete the person's records (called inside the erasure's transaction);
    - `expire(category, cutoff, dry_run)`: delete (or, on a dry run, count) the category's records older than cutoff;
    - `report()`: the totals held, for the GDPR report's data inventory."""

    name: str
    categories: tuple[str, ...]
    inventory: Callable[[AbstractBaseUser], dict[str, int]]
    export: Callable[[AbstractBaseUser, zipfile.ZipFile], Exported]
    erase: Callable[[AbstractBaseUser], Erased]
    expire: Callable[[str, datetime, bool], int]
    report: Callable[[], dict[str, int]]


_holdings: dict[str, Holding] = {}


def holding_register(holding: Holding) -> None:
    """Register an app's holding (from its AppConfig.ready()). A name or a category registered twice is refused."""
    if holding.name in _holdings:
        raise ImproperlyConfigured(f"A personal-data holding named {holding.name!r} is already registered.")
    claimed = {category for other in _holdings.values() for category in other.categories}
    if taken := claimed.intersection(holding.categories):
        raise ImproperlyConfigured(f"Categories {sorted(taken)} already belong to another holding.")
    _holdings[holding.name] = holding


def holdings() -> tuple[Holding, ...]:
    """Every registered holding, in the order they were registered."""
    return tuple(_holdings.values())


def holding_for(category: str) -> Holding | None:
    """The holding that answers for this category, if one does."""
    return next((holding for holding in _holdings.values() if category in holding.categories), None)
