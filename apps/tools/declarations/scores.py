"""The tools that keep a caller's scores: import, list, describe, export and delete them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from apps.security.scopes import READ, WRITE
from apps.tools.declarations.common import ScoreArgs, ScoreId, score_and_music
from apps.tools.invocation import Caller
from apps.tools.registry import ToolArguments, tool
from apps.tools.selectors import score_list
from apps.tools.services.export import EXPORT_FORMATS, export_score
from apps.tools.services.parsing import SOURCE_TYPES, import_warnings
from apps.tools.services.scores import score_delete, score_import
from apps.tools.services.summary import score_summary


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
    (base64), Humdrum or a server-side file. Every part is kept, each staff of a multi-staff part (a piano's two
    staves) as its own part, as music21's own reader gives them.

    Returns:
    - score_id, title, source_format: the stored score and the format it was read as.
    - parts: number of parts (staves of a multi-staff instrument count one each).
    - measures: number of measures (a pickup counts as one); notes: notes and chords, tied continuations included.
    - pitch_range: lowest and highest pitch as they sound, spelled with octave ("F#2", "Bb5").
    - warnings: what the format could not carry (MIDI: pickup bars, exact rhythm and spelling); empty otherwise."""
    score = score_import(owner=caller.user, score_id=args.score_id, source=args.source, source_type=args.source_type)
    return {
        "score_id": score.score_id,
        "title": score.title,
        "source_format": score.source_format,
        "parts": score.parts_count,
        "measures": score.measures_count,
        "notes": score.notes_count,
        "pitch_range": {"lowest": score.lowest_pitch, "highest": score.highest_pitch},
        "warnings": import_warnings(score.source_format),
    }


class ListArgs(ToolArguments):
    limit: int = Field(50, ge=1, le=200, description="How many scores per page (1-200).")
    cursor: str | None = Field(None, max_length=200, description="The next_cursor of the previous page.")


@tool("list_scores", arguments=ListArgs, scope=READ, group="score_import")
def list_scores(caller: Caller, args: ListArgs) -> dict[str, Any]:
    """List your scores, newest first, a page at a time.

    Returns:
    - scores: each with score_id, title, source_format, parts, measures (measure objects), notes, derived_from (the
      score it was made from, or null) and created (ISO 8601, UTC).
    - next_cursor: pass it as `cursor` for the next page; null on the last page."""
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


@tool("score_info", arguments=ScoreArgs, scope=READ, group="music_analysis")
def score_info(caller: Caller, args: ScoreArgs) -> dict[str, Any]:
    """Describe a score: title, composer, parts and instruments, measures and bars, notes, pitch range, key and
    time signatures, and length in quarter notes.

    Returns:
    - parts: one row per part, in score order: part (0-based index), part_label (its name; an unnamed part is
      "Part 1", "Part 2"... by place; parts sharing a name are numbered in score order, "Tenor 1", "Tenor 2"),
      name (the same label), instrument, measures (measure objects), notes (note and chord events).
    - parts_count; notes: note and chord events of all parts (a chord is one).
    - measures: measure objects of the longest part, a pickup counted as one.
    - bars: bars as printed, from first_bar to last_bar (printed bar numbers); a pickup (bar 0) is not a bar, and
      pickup says whether there is one.
    - lowest_pitch, highest_pitch: as they sound, spelled with octave, # and b (`F#2`, `Bb4`).
    - key_signatures: each distinct signature at concert pitch (`3 sharps`, `1 flat`), in order met, those of the
      parts written at concert pitch first (a clarinet in Bb's written `1 flat` is `3 flats`); key_signature_keys:
      the two keys each one writes (`A major / F# minor`).
    - time_signatures (`3/4`); duration_quarters: length in quarter notes."""
    score, music = score_and_music(caller, args.score_id)
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
    """Export a score's content as MusicXML, compressed MusicXML, MIDI, SVG notation or Braille. MusicXML and
    compressed MusicXML (mxl) keep every part, staff, note and bar and import back as the same score; MIDI plays
    repeats out and keeps no bar lines, pickup or spelling; SVG and Braille are for reading, not re-import. A score
    music21 cannot write in a format (a MIDI of repeats with a missing end repeat, or of parts whose repeat signs
    differ) is an unprocessable_score error saying why and what to try.

    Returns:
    - format, media_type: the format written and its MIME type.
    - encoding: "utf-8" for text formats (musicxml, svg, braille), "base64" for binary ones (mxl, midi).
    - content: the file itself; size_bytes: its size in bytes before base64.
    - warnings: what the format does not carry (empty for musicxml and mxl)."""
    score, music = score_and_music(caller, args.score_id)
    return {"score_id": score.score_id, **export_score(music, fmt=args.format)}


@tool("delete_score", arguments=ScoreArgs, scope=WRITE, group="score_import", destructive=True)
def delete(caller: Caller, args: ScoreArgs) -> dict[str, Any]:
    """Delete one of your scores.

    Returns:
    - score_id; deleted: true. Scores derived from it are kept (they no longer name it as their source)."""
    score_delete(owner=caller.user, score_id=args.score_id)
    return {"score_id": args.score_id, "deleted": True}
