"""People's scores as personal data: what compliance needs of them (inventory, export, erasure, retention, reports),
registered with its holdings registry from ToolsConfig.ready()."""

from __future__ import annotations

import json
import zipfile
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db.models import Sum
from django.db.models.functions import Length

from apps.compliance.holdings import Erased, Exported, Holding, export_time
from apps.compliance.models import RetentionPolicy
from apps.compliance.retention import delete_in_batches
from apps.core.errors import ApplicationError
from apps.tools.models import AnalysisResult, Score, SourceFormat
from apps.tools.services.cache import parsed_scores_purge
from apps.tools.services.export import export_score
from apps.tools.services.scores import score_stream

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

SCORES = RetentionPolicy.Category.SCORES.value
DERIVED_SCORES = RetentionPolicy.Category.DERIVED_SCORES.value
# The analysis answers kept for a person's scores (apps.tools.results): no retention policy of their own, they go
# with their score.
ANALYSIS_RESULTS = "analysis_results"
ANALYSIS_RESULTS_FILE = "analysis_results.json"
# The file extension of each original source format in a person's export.
EXTENSIONS = {
    SourceFormat.TINYNOTATION: "tnc",
    SourceFormat.ABC: "abc",
    SourceFormat.MUSICXML: "musicxml",
    SourceFormat.MXL: "mxl",
    SourceFormat.MIDI: "mid",
    SourceFormat.HUMDRUM: "krn",
}


def scores_inventory(user: AbstractBaseUser) -> dict[str, int]:
    scores = Score.objects.filter(owner=user)
    return {
        SCORES: scores.filter(derivation="").count(),
        DERIVED_SCORES: scores.exclude(derivation="").count(),
        ANALYSIS_RESULTS: AnalysisResult.objects.filter(score__owner=user).count(),
    }


def scores_export(user: AbstractBaseUser, archive: zipfile.ZipFile) -> Exported:
    """Each score as MusicXML (`<category>/<score id>.musicxml`), written by music21 from the stored music, so a
    score imported from the corpus comes out as its music, not as the corpus path it was stored under. A score
    given in another format is also kept exactly as given (`<category>/originals/<score id>.<ext>`); one given as
    MusicXML is its own original. A score music21 cannot write as MusicXML keeps its original alone, and the
    manifest says why. Their details go into the manifest."""
    files: dict[str, list[str]] = {SCORES: [], DERIVED_SCORES: []}
    scores: list[dict[str, Any]] = []
    for score in Score.objects.filter(owner=user).select_related("derived_from").order_by("score_id").iterator():
        category = DERIVED_SCORES if score.derivation else SCORES
        source = score.source
        original_bytes = source if isinstance(source, bytes) else source.encode("utf-8")
        musicxml: str | None = None
        musicxml_error = None
        if score.source_format == SourceFormat.MUSICXML:
            musicxml_name = f"{category}/{score.score_id}.musicxml"
            archive.writestr(musicxml_name, original_bytes)
            original_name = musicxml_name
        else:
            try:
                musicxml = export_score(score_stream(score=score), fmt="musicxml")["content"]
            except ApplicationError as error:  # music21 cannot read or write it: the original still goes out
                musicxml_error = error.message
            musicxml_name = f"{category}/{score.score_id}.musicxml" if musicxml is not None else None
            if musicxml_name is not None:
                archive.writestr(musicxml_name, musicxml)
            original_name = None
            if score.source_format != SourceFormat.CORPUS:  # a corpus "source" is only the path, kept below
                original_name = f"{category}/originals/{score.score_id}.{EXTENSIONS[score.source_format]}"
                archive.writestr(original_name, original_bytes)
        files[category] += [name for name in dict.fromkeys((musicxml_name, original_name)) if name]
        scores.append(
            {
                "score_id": score.score_id,
                "category": category,
                "file": musicxml_name or original_name,
                "musicxml": musicxml_name,
                "original": original_name,
                "musicxml_error": musicxml_error,
                "title": score.title,
                "composer": score.composer,
                "source_format": score.source_format,
                "source_origin": score.source_origin,
                "corpus_path": score.source_text if score.source_format == SourceFormat.CORPUS else None,
                "derived_from": score.derived_from.score_id if score.derived_from else None,
                "derivation": score.derivation,
                "sha256": score.content_sha256,
                "created_at": export_time(score.created_at),
                "updated_at": export_time(score.updated_at),
            }
        )
    counted = {category: sum(1 for entry in scores if entry["category"] == category) for category in files}
    answers = _analysis_results(user)
    archive.writestr(ANALYSIS_RESULTS_FILE, json.dumps(answers, indent=2))
    return Exported(
        categories={
            **{category: {"count": counted[category], "files": names} for category, names in files.items()},
            ANALYSIS_RESULTS: {"count": len(answers), "files": [ANALYSIS_RESULTS_FILE]},
        },
        manifest={"scores": scores},
        count=len(scores),
    )


def _analysis_results(user: AbstractBaseUser) -> list[dict[str, Any]]:
    """The analysis answers kept for the person's scores (apps.tools.results): which score, which tool, when first
    and last given, and the answer itself."""
    kept = AnalysisResult.objects.filter(score__owner=user).select_related("score").order_by("score__score_id", "pk")
    return [
        {
            "score_id": row.score.score_id,
            "tool": row.tool,
            "created_at": export_time(row.created_at),
            "last_used_at": export_time(row.used_at),
            "answer": json.loads(row.result),
        }
        for row in kept.iterator()
    ]


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
    categories=(SCORES, DERIVED_SCORES, ANALYSIS_RESULTS),
    inventory=scores_inventory,
    export=scores_export,
    erase=scores_erase,
    expire=scores_expire,
    report=scores_report,
)
