"""People's scores as personal data: what compliance needs of them (inventory, export, erasure, retention, reports),
registered with its holdings registry from ToolsConfig.ready()."""

from __future__ import annotations

import zipfile
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db.models import Sum
from django.db.models.functions import Length

from apps.compliance.holdings import Erased, Exported, Holding
from apps.compliance.models import RetentionPolicy
from apps.compliance.retention import delete_in_batches
from apps.tools.models import Score, SourceFormat
from apps.tools.services.cache import parsed_scores_purge

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

SCORES = RetentionPolicy.Category.SCORES.value
DERIVED_SCORES = RetentionPolicy.Category.DERIVED_SCORES.value
# The file extension of each source format in a person's export.
EXTENSIONS = {
    SourceFormat.CORPUS: "txt",
    SourceFormat.TINYNOTATION: "tnc",
    SourceFormat.ABC: "abc",
    SourceFormat.MUSICXML: "musicxml",
    SourceFormat.MXL: "mxl",
    SourceFormat.MIDI: "mid",
    SourceFormat.HUMDRUM: "krn",
}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def scores_inventory(user: AbstractBaseUser) -> dict[str, int]:
    scores = Score.objects.filter(owner=user)
    return {
        SCORES: scores.filter(derivation="").count(),
        DERIVED_SCORES: scores.exclude(derivation="").count(),
    }


def scores_export(user: AbstractBaseUser, archive: zipfile.ZipFile) -> Exported:
    """Every score source byte for byte, named by its score id under scores/ or derived_scores/; their details go
    into the manifest."""
    files: dict[str, list[str]] = {SCORES: [], DERIVED_SCORES: []}
    scores: list[dict[str, Any]] = []
    for score in Score.objects.filter(owner=user).order_by("score_id").iterator():
        category = DERIVED_SCORES if score.derivation else SCORES
        name = f"{category}/{score.score_id}.{EXTENSIONS.get(score.source_format, 'txt')}"
        source = score.source
        archive.writestr(name, source if isinstance(source, bytes) else source.encode("utf-8"))
        files[category].append(name)
        scores.append(
            {
                "score_id": score.score_id,
                "file": name,
                "title": score.title,
                "composer": score.composer,
                "source_format": score.source_format,
                "source_origin": score.source_origin,
                "derived_from": score.derived_from.score_id if score.derived_from else None,
                "derivation": score.derivation,
                "sha256": score.content_sha256,
                "created_at": _iso(score.created_at),
                "updated_at": _iso(score.updated_at),
            }
        )
    return Exported(
        categories={category: {"count": len(names), "files": names} for category, names in files.items()},
        manifest={"scores": scores},
        count=len(scores),
    )


def scores_erase(user: AbstractBaseUser) -> Erased:
    """Delete the person's scores (a derivation of one of hers is unlinked first, so that the delete does not trip
    over the reference); the processes drop their parsed copies once the erasure is committed."""
    owned = Score.objects.filter(owner=user)
    pks = list(owned.values_list("pk", flat=True))
    owned.update(derived_from=None)
    owned.delete()
    return Erased(count=len(pks), after=lambda: parsed_scores_purge(pks))


def scores_expire(category: str, cutoff: datetime, dry_run: bool) -> int:
    """Delete the scores (or the derived scores) created before cutoff, and their parsed copies everywhere."""
    scores = Score.objects.filter(created_at__lt=cutoff)
    scores = scores.exclude(derivation="") if category == DERIVED_SCORES else scores.filter(derivation="")
    return delete_in_batches(scores, dry_run=dry_run, on_batch=parsed_scores_purge)


def scores_report() -> dict[str, int]:
    return {
        SCORES: Score.objects.filter(derivation="").count(),
        DERIVED_SCORES: Score.objects.exclude(derivation="").count(),
        "score_bytes": Score.objects.aggregate(n=Sum(Length("source_text")))["n"] or 0,
    }


SCORES_HOLDING = Holding(
    name="scores",
    categories=(SCORES, DERIVED_SCORES),
    inventory=scores_inventory,
    export=scores_export,
    erase=scores_erase,
    expire=scores_expire,
    report=scores_report,
)
