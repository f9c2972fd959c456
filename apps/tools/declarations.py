"""Every music21 tool, declared once. Each function only connects the caller's stored scores with a pure service."""

from __future__ import annotations

import functools
import os
import platform
from typing import Annotated, Any, Literal

import music21
import verovio
from django.core.cache import cache
from django.db import connection
from music21 import corpus, stream
from pydantic import Field, model_validator

from apps.core.errors import InvalidArguments
from apps.security.scopes import READ, WRITE
from apps.tools.corpus_jobs import corpus_job_run
from apps.tools.invocation import Caller
from apps.tools.models import SCORE_ID_PATTERN, Score
from apps.tools.registry import ToolArguments, tool
from apps.tools.selectors import score_get, score_list
from apps.tools.services import composition, harmony, keys, patterns, voiceleading
from apps.tools.services.cache import parsed_scores
from apps.tools.services.corpus import corpus_select
from apps.tools.services.export import EXPORT_FORMATS, export_score
from apps.tools.services.parsing import SOURCE_TYPES
from apps.tools.services.render import render_svg
from apps.tools.services.scores import score_delete, score_import, score_store_generated, score_stream
from apps.tools.services.summary import score_summary

ScoreId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=SCORE_ID_PATTERN,
        description="Your id for the score (letters, digits, '.', '-', '_').",
    ),
]
NewScoreId = Annotated[
    str | None,
    Field(
        default=None,
        max_length=128,
        pattern=SCORE_ID_PATTERN,
        description="Id for the generated score; by default one is derived from the source score's id.",
    ),
]


def _music(caller: Caller, score_id: str) -> tuple[Score, stream.Score]:
    score = score_get(owner=caller.user, score_id=score_id)
    return score, score_stream(score=score)


def _stored(score: Score, info: dict[str, Any]) -> dict[str, Any]:
    return {
        "new_score_id": score.score_id,
        "title": score.title,
        "parts": score.parts_count,
        "measures": score.measures_count,
        "notes": score.notes_count,
        **info,
    }


# --- Scores -----------------------------------------------------------------------------------------------------


class ImportArgs(ToolArguments):
    score_id: ScoreId
    source: str = Field(
        description=(
            "The music: a corpus path ('bach/bwv66.6'), tinyNotation (one part per line, e.g. \"4/4 c4 d e f\"), "
            "ABC text, MusicXML text, base64 MIDI, Humdrum text, or a file name under the server's import folder."
        )
    )
    source_type: Literal[SOURCE_TYPES] = Field("auto", description="How to read `source`; 'auto' guesses.")  # type: ignore[valid-type]


@tool("import_score", arguments=ImportArgs, scope=WRITE, group="score_import")
def import_score(caller: Caller, args: ImportArgs) -> dict[str, Any]:
    """Import a score under an id of your choice from the music21 corpus, tinyNotation, ABC, MusicXML, MIDI
    (base64), Humdrum or a server-side file. Returns what was read: parts, measures, notes, pitch range, title."""
    score = score_import(owner=caller.user, score_id=args.score_id, source=args.source, source_type=args.source_type)
    return {
        "score_id": score.score_id,
        "title": score.title,
        "source_format": score.source_format,
        "parts": score.parts_count,
        "measures": score.measures_count,
        "notes": score.notes_count,
        "pitch_range": {"lowest": score.lowest_pitch, "highest": score.highest_pitch},
    }


class ListArgs(ToolArguments):
    limit: int = Field(50, ge=1, le=200, description="How many scores per page (1-200).")
    cursor: str | None = Field(None, description="The next_cursor of the previous page.")


@tool("list_scores", arguments=ListArgs, scope=READ, group="score_import")
def list_scores(caller: Caller, args: ListArgs) -> dict[str, Any]:
    """List your scores, newest first, a page at a time."""
    page, next_cursor = score_list(owner=caller.user, limit=args.limit, cursor=args.cursor)
    return {
        "scores": [
            {
                "score_id": s.score_id,
                "title": s.title,
                "source_format": s.source_format,
                "parts": s.parts_count,
                "measures": s.measures_count,
                "notes": s.notes_count,
                "derived_from": s.derived_from.score_id if s.derived_from_id and s.derived_from else None,
                "created": s.created_at.isoformat(),
            }
            for s in page
        ],
        "next_cursor": next_cursor,
    }


class ScoreArgs(ToolArguments):
    score_id: ScoreId


@tool("score_info", arguments=ScoreArgs, scope=READ, group="music_analysis")
def score_info(caller: Caller, args: ScoreArgs) -> dict[str, Any]:
    """Describe a score: title, composer, parts and instruments, measures (pickup included), notes, pitch range,
    key and time signatures, and length in quarter notes."""
    score, music = _music(caller, args.score_id)
    return {
        "score_id": score.score_id,
        "title": score.title,
        "composer": score.composer,
        "source_format": score.source_format,
        "derived_from": score.derived_from.score_id if score.derived_from else None,
        **score_summary(music),
        "created": score.created_at.isoformat(),
    }


class ExportArgs(ToolArguments):
    score_id: ScoreId
    # Not an enum: formats people ask for that music21 cannot write (abc, pdf...) get an answer saying why.
    format: str = Field(description=f"One of: {', '.join(EXPORT_FORMATS)}.", examples=list(EXPORT_FORMATS))


@tool("export_score", arguments=ExportArgs, scope=READ, group="export")
def export(caller: Caller, args: ExportArgs) -> dict[str, Any]:
    """Export a score's content as MusicXML, compressed MusicXML, MIDI, SVG notation or Braille. Text formats come
    back as text, binary ones as base64, each with its media type."""
    score, music = _music(caller, args.score_id)
    return {"score_id": score.score_id, **export_score(music, fmt=args.format)}


@tool("delete_score", arguments=ScoreArgs, scope=WRITE, group="score_import", destructive=True)
def delete(caller: Caller, args: ScoreArgs) -> dict[str, Any]:
    """Delete one of your scores."""
    score_delete(owner=caller.user, score_id=args.score_id)
    return {"score_id": args.score_id, "deleted": True}


# --- Analysis ---------------------------------------------------------------------------------------------------


class KeyArgs(ToolArguments):
    score_id: ScoreId
    algorithm: Literal["all", "aarden", "krumhansl", "bellman", "temperley", "simple"] = Field(
        "all", description="Key-finding profile; 'all' runs every one and reports their agreement."
    )


@tool("key_analysis", arguments=KeyArgs, scope=READ, group="music_analysis")
def key_analysis(caller: Caller, args: KeyArgs) -> dict[str, Any]:
    """Find the key of the whole score (all parts) with its confidence, the next likeliest keys and each
    algorithm's answer."""
    score, music = _music(caller, args.score_id)
    return {"score_id": score.score_id, **keys.key_analysis(music, algorithm=args.algorithm)}


class ChordArgs(ToolArguments):
    score_id: ScoreId
    limit: int = Field(500, ge=1, le=5000, description="At most this many chords in the answer.")


@tool("chord_analysis", arguments=ChordArgs, scope=READ, group="music_analysis")
def chord_analysis(caller: Caller, args: ChordArgs) -> dict[str, Any]:
    """List the score's chords (all parts sounded together) with measure, beat, pitches and Roman numeral in the
    score's key."""
    score, music = _music(caller, args.score_id)
    return {"score_id": score.score_id, **harmony.chord_analysis(music, limit=args.limit)}


class HarmonyArgs(ToolArguments):
    score_id: ScoreId
    analysis_type: Literal["roman", "functional", "cadences"] = Field(
        "roman",
        description="'roman': the Roman-numeral progression; 'functional': tonic/predominant/dominant functions; "
        "'cadences': the cadences at phrase endings and their types.",
    )


@tool("harmony_analysis", arguments=HarmonyArgs, scope=READ, group="music_analysis")
def harmony_analysis(caller: Caller, args: HarmonyArgs) -> dict[str, Any]:
    """Analyse the harmony as a Roman-numeral progression, as harmonic functions, or as cadences."""
    score, music = _music(caller, args.score_id)
    return {"score_id": score.score_id, **harmony.harmony_analysis(music, analysis_type=args.analysis_type)}


@tool("voice_leading_analysis", arguments=ScoreArgs, scope=READ, group="music_analysis")
def voice_leading_analysis(caller: Caller, args: ScoreArgs) -> dict[str, Any]:
    """Find parallel fifths and octaves and voice crossings between every pair of parts, with measures and beats."""
    score, music = _music(caller, args.score_id)
    return {"score_id": score.score_id, **voiceleading.voice_leading_analysis(music)}


class PatternArgs(ToolArguments):
    score_id: ScoreId
    pattern_type: Literal["melodic", "rhythmic", "both"] = Field("both", description="Which patterns to look for.")
    min_length: int = Field(3, ge=2, le=8, description="Shortest motif, in notes.")


@tool("pattern_recognition", arguments=PatternArgs, scope=READ, group="music_analysis")
def pattern_recognition(caller: Caller, args: PatternArgs) -> dict[str, Any]:
    """Find repeated melodic motifs (transposition-invariant) and rhythmic patterns with their locations, and the
    phrase structure of the top part."""
    score, music = _music(caller, args.score_id)
    return {
        "score_id": score.score_id,
        **patterns.pattern_recognition(music, pattern_type=args.pattern_type, min_length=args.min_length),
    }


class CorpusArgs(ToolArguments):
    composer: str | None = Field(None, max_length=60, description="Every work of this corpus composer ('bach')...")
    path_pattern: str | None = Field(
        None, max_length=200, description="...or the corpus works matching this pattern ('bach/bwv1*')."
    )
    analysis: Literal["key", "summary"] = Field(
        "key", description="'key': each work's key and confidence; 'summary': parts, measures, notes, range."
    )
    limit: int = Field(100, ge=1, le=1000, description="At most this many works, in path order.")

    @model_validator(mode="after")
    def _one_query(self) -> CorpusArgs:
        if (self.composer is None) == (self.path_pattern is None):
            raise ValueError("give exactly one of composer or path_pattern")
        return self


@tool(
    "analyze_corpus",
    arguments=CorpusArgs,
    scope=READ,
    group="music_analysis",
    timeout_setting="CORPUS_JOB_TIMEOUT",
    isolated=False,  # its work runs on Celery; it reports progress and stops when cancelled, from this process
)
def analyze_corpus(caller: Caller, args: CorpusArgs) -> dict[str, Any]:
    """Analyse many works of the bundled music21 corpus (a composer, or a path pattern) as a background job on
    the Celery workers, with progress notifications; cancel the call to stop it. Returns each work's result."""
    paths = corpus_select(composer=args.composer, pattern=args.path_pattern, limit=args.limit)
    results = corpus_job_run(
        paths, analysis=args.analysis, progress=caller.progress, is_cancelled=caller.cancelled.is_set
    )
    failed = [r for r in results if "error" in r]
    summary: dict[str, Any] = {"works": len(results), "failed": len(failed)}
    if args.analysis == "key":
        modes = [r["key"].split()[-1] for r in results if "key" in r]
        summary["modes"] = {mode: modes.count(mode) for mode in sorted(set(modes))}
    return {"analysis": args.analysis, "summary": summary, "results": results}


# --- Composition ------------------------------------------------------------------------------------------------

VoicePart = Literal["soprano", "alto", "tenor", "bass"]


class HarmonizeArgs(ToolArguments):
    score_id: ScoreId
    style: Literal["chorale", "classical", "jazz", "pop"] = Field("chorale", description="Harmonic vocabulary.")
    voice_parts: list[VoicePart] = Field(
        default_factory=lambda: ["soprano", "alto", "tenor", "bass"],
        min_length=1,
        description="Which voices to write; the melody is the soprano, so it must be included.",
    )
    new_score_id: NewScoreId = None


@tool("harmonize_melody", arguments=HarmonizeArgs, scope=WRITE, group="composition")
def harmonize_melody(caller: Caller, args: HarmonizeArgs) -> dict[str, Any]:
    """Harmonise the top part of a score in the given style and voices; stores the result as a new score."""
    score, music = _music(caller, args.score_id)
    result, info = composition.harmonize_melody(music, style=args.style, voice_parts=list(args.voice_parts))
    new = score_store_generated(
        owner=caller.user, parent=score, music=result, derivation="harmonized", score_id=args.new_score_id
    )
    return _stored(new, info)


class CounterpointArgs(ToolArguments):
    score_id: ScoreId
    species: int = Field(1, ge=1, le=5, description="Fux species, 1 (note against note) to 5 (florid).")
    voice_position: Literal["above", "below"] = Field("above", description="Counterpoint above or below the cantus.")
    new_score_id: NewScoreId = None


@tool("generate_counterpoint", arguments=CounterpointArgs, scope=WRITE, group="composition")
def generate_counterpoint(caller: Caller, args: CounterpointArgs) -> dict[str, Any]:
    """Write species counterpoint against the score's top part as cantus firmus; stores the two-part result and
    reports any rule violations an independent check finds."""
    score, music = _music(caller, args.score_id)
    result, info = composition.generate_counterpoint(music, species=args.species, voice_position=args.voice_position)
    new = score_store_generated(
        owner=caller.user, parent=score, music=result, derivation="counterpoint", score_id=args.new_score_id
    )
    return _stored(new, info)


class ImitateArgs(ToolArguments):
    score_id: ScoreId | None = Field(None, description="Learn from this score of yours...")
    composer: str | None = Field(
        None, max_length=60, description="...or from this composer's works in the music21 corpus (e.g. 'bach')."
    )
    length: int = Field(8, ge=1, le=64, description="Length of the new melody in measures.")
    seed: int = Field(0, ge=0, description="Same seed, same melody.")
    new_score_id: NewScoreId = None

    @model_validator(mode="after")
    def _one_source(self) -> ImitateArgs:
        if (self.score_id is None) == (self.composer is None):
            raise ValueError("give exactly one of score_id or composer")
        return self


@tool("imitate_style", arguments=ImitateArgs, scope=WRITE, group="composition")
def imitate_style(caller: Caller, args: ImitateArgs) -> dict[str, Any]:
    """Write a new melody in the style of one of your scores or of a corpus composer; stores it as a new score."""
    parent = None
    if args.score_id is not None:
        parent, music = _music(caller, args.score_id)
        sources = [music]
        base = parent.score_id
    else:
        sources = list(_composer_sources((args.composer or "").strip().lower()))
        base = (args.composer or "").strip().lower()
    result, info = composition.imitate_style(sources, length=args.length, seed=args.seed)
    new = score_store_generated(
        owner=caller.user,
        parent=parent,
        music=result,
        derivation="imitation",
        score_id=args.new_score_id,
        base=base,
    )
    return _stored(new, info)


# How many corpus works a composer imitation learns from: enough for a varied model, few enough to stay quick.
COMPOSER_SAMPLE = 8


@functools.lru_cache(maxsize=8)
def _composer_sources(composer: str) -> tuple[stream.Score, ...]:
    if not composer.isidentifier():
        raise InvalidArguments(f"{composer!r} is not a composer name in the music21 corpus (for example 'bach').")
    paths = corpus.getComposer(composer)
    scores: list[stream.Score] = []
    for path in sorted(paths, key=str)[: COMPOSER_SAMPLE * 3]:
        parsed = corpus.parse(path)
        if isinstance(parsed, stream.Score) and parsed.parts:
            scores.append(parsed)
        if len(scores) == COMPOSER_SAMPLE:
            break
    if not scores:
        raise InvalidArguments(f"The music21 corpus has no scores by {composer!r}; try 'bach', 'mozart' or 'handel'.")
    return tuple(scores)


class TransposeArgs(ToolArguments):
    score_id: ScoreId
    interval: str = Field(max_length=10, description="Interval name such as 'P5', 'M2', '-m3' (down a minor third).")
    new_score_id: NewScoreId = None


@tool("transpose_score", arguments=TransposeArgs, scope=WRITE, group="composition")
def transpose_score(caller: Caller, args: TransposeArgs) -> dict[str, Any]:
    """Transpose a score by an interval, key signatures included; stores the result as a new score."""
    score, music = _music(caller, args.score_id)
    result, info = composition.transpose(music, interval=args.interval)
    new = score_store_generated(
        owner=caller.user, parent=score, music=result, derivation="transposed", score_id=args.new_score_id
    )
    return _stored(new, info)


# --- Notation and the server ------------------------------------------------------------------------------------


class RenderArgs(ToolArguments):
    score_id: ScoreId
    measure_start: int | None = Field(None, ge=0, description="First measure to draw (0 is a pickup).")
    measure_end: int | None = Field(None, ge=0, description="Last measure to draw.")
    page: int = Field(1, ge=1, description="Page of the engraving, when it needs more than one.")


@tool("render_score", arguments=RenderArgs, scope=READ, group="export")
def render_score(caller: Caller, args: RenderArgs) -> dict[str, Any]:
    """Engrave the score, or a range of its measures, as SVG notation."""
    score, music = _music(caller, args.score_id)
    rendered = render_svg(music, measure_start=args.measure_start, measure_end=args.measure_end, page=args.page)
    return {"score_id": score.score_id, "media_type": "image/svg+xml", **rendered}


class NoArgs(ToolArguments):
    pass


@tool("health_check", arguments=NoArgs, scope=None, group="system")
def health_check(caller: Caller, args: NoArgs) -> dict[str, Any]:
    """Report whether the server and its database and cache are working, and its software versions."""
    checks = {"database": _probe(lambda: connection.cursor().execute("SELECT 1")), "cache": _probe(_cache_probe)}
    return {
        "healthy": all(c == "ok" for c in checks.values()),
        "checks": checks,
        "versions": {
            "music21": music21.__version__,
            "verovio": verovio.toolkit().getVersion(),
            "python": platform.python_version(),
        },
        "parsed_scores_cached": len(parsed_scores),
        "process": os.getpid(),  # which worker answered, for operators chasing one process's trouble
    }


def _cache_probe() -> None:
    cache.set("health-probe", "ok", 10)
    if cache.get("health-probe") != "ok":
        raise RuntimeError("cache did not return what was stored")


def _probe(check: Any) -> str:
    try:
        check()
    except Exception as exc:  # a health check reports failures instead of raising them
        return f"error: {type(exc).__name__}"
    return "ok"
