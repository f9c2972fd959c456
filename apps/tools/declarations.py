"""Every music21 tool, declared once. Each function only connects the caller's stored scores with a pure service."""

from __future__ import annotations

import functools
import os
import platform
from collections.abc import Callable
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
from apps.tools.results import result_remembered
from apps.tools.selectors import score_get, score_list
from apps.tools.services import composition, harmony, keys, patterns, voiceleading
from apps.tools.services.cache import parsed_scores
from apps.tools.services.corpus import corpus_select
from apps.tools.services.export import EXPORT_FORMATS, export_score
from apps.tools.services.parsing import SOURCE_TYPES, import_warnings
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


def _analysed(
    caller: Caller, name: str, args: ScoreArgs, analyse: Callable[[stream.Score], dict[str, Any]]
) -> dict[str, Any]:
    """An analysis tool's answer on the caller's score `args.score_id`, remembered across calls
    (apps.tools.results): the score is parsed only when the question is new."""
    score = score_get(owner=caller.user, score_id=args.score_id)
    question = args.model_dump(mode="json", exclude={"score_id"})
    answer = result_remembered(
        score=score, tool=name, arguments=question, compute=lambda: analyse(score_stream(score=score))
    )
    return {"score_id": score.score_id, **answer}


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
    (base64), Humdrum or a server-side file. Every part is kept, each staff of a multi-staff part (a piano's two
    staves) as its own part, as music21's own reader gives them.

    Returns:
    - score_id, title, source_format: the stored score and the format it was read as.
    - parts: number of parts (staves of a multi-staff instrument count one each).
    - measures: number of measures (a pickup counts as one); notes: notes and chords, tied continuations included.
    - pitch_range: lowest and highest pitch, spelled with octave ("F#2", "Bb5").
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
    cursor: str | None = Field(None, description="The next_cursor of the previous page.")


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


class ScoreArgs(ToolArguments):
    score_id: ScoreId


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
    - lowest_pitch, highest_pitch: spelled with octave, # and b (`F#2`, `Bb4`).
    - key_signatures: each distinct signature in order met (`3 sharps`, `1 flat`); key_signature_keys: the two keys
      each one writes (`A major / F# minor`).
    - time_signatures (`3/4`); duration_quarters: length in quarter notes."""
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
    score, music = _music(caller, args.score_id)
    return {"score_id": score.score_id, **export_score(music, fmt=args.format)}


@tool("delete_score", arguments=ScoreArgs, scope=WRITE, group="score_import", destructive=True)
def delete(caller: Caller, args: ScoreArgs) -> dict[str, Any]:
    """Delete one of your scores.

    Returns:
    - score_id; deleted: true. Scores derived from it are kept (they no longer name it as their source)."""
    score_delete(owner=caller.user, score_id=args.score_id)
    return {"score_id": args.score_id, "deleted": True}


# --- Analysis ---------------------------------------------------------------------------------------------------


class KeyArgs(ScoreArgs):
    algorithm: Literal["all", "aarden", "krumhansl", "bellman", "temperley", "simple"] = Field(
        "all", description="Key-finding profile; 'all' runs every one and reports their agreement."
    )


@tool("key_analysis", arguments=KeyArgs, scope=READ, group="music_analysis")
def key_analysis(caller: Caller, args: KeyArgs) -> dict[str, Any]:
    """Find the key of the whole score (all parts) with its confidence, the next likeliest keys and each
    algorithm's answer. Keys are named from pitch-class profiles and spelled as the key signature spells them
    (6 sharps: `F# major` or `D# minor`, never `Gb`/`Eb`), with # and b.

    Returns:
    - key (`F# minor`), tonic (`F#`), mode; all three null when the music has no clear key (atonal or modal:
      the profiles fit it poorly, mean correlation below 0.7); best_guess is the profile's key either way.
    - confidence: 0..1, half the agreement share plus half the margin (capped at 0.2 = 1); 0 with no clear key.
    - agreement (`4 of 5` profiles naming the key, enharmonic spellings alike) and agreement_share (0..1).
    - correlation: the chosen profile's correlation (-1..1) with the key; margin: it minus the runner-up's.
    - warning: why the key is absent or uncertain (fewer than half the profiles agree, or the runner-up within
      0.02), else null.
    - key_signature (`6 sharps`) and key_signature_keys (`F# major / D# minor`) of the opening signature.
    - algorithm: the profile the key comes from; alternatives: the next 4 keys with their correlation;
      by_algorithm: each profile's key, tonic, mode and correlation."""
    return _analysed(caller, "key_analysis", args, lambda music: keys.key_analysis(music, algorithm=args.algorithm))


class ChordArgs(ScoreArgs):
    limit: int = Field(500, ge=1, le=5000, description="At most this many chords in the answer.")


@tool("chord_analysis", arguments=ChordArgs, scope=READ, group="music_analysis")
def chord_analysis(caller: Caller, args: ChordArgs) -> dict[str, Any]:
    """List the score's harmonies (all parts sounded together) with measure, beat, pitches and Roman numeral in
    the score's key. A slice that only decorates a chord is folded into it: passing and neighbour notes and
    anticipations into the chord before, suspensions and appoggiaturas into the chord they resolve to. Roman
    numerals follow one textbook style: case for the third (V, ii), o/ø/+ for diminished, half-diminished and
    augmented, 6/64 and 7/65/43/42 for inversions, b/# only for a root outside the key (in minor VI, VII and viio
    are the key's own), secondary dominants as V7/V or viio7/ii.

    Returns:
    - key: the score's key (`F# minor`); chord_count: how many harmonies; truncated: true when more than limit.
    - chords: each with measure (printed bar number), beat (1-based), quarter_length (its length in quarter notes),
      pitches (low to high, `C#5`), root and bass (`F#`), name (`A major triad`) and roman_numeral (`V6/III`)."""
    return _analysed(caller, "chord_analysis", args, lambda music: harmony.chord_analysis(music, limit=args.limit))


class HarmonyArgs(ScoreArgs):
    analysis_type: Literal["roman", "functional", "cadences"] = Field(
        "roman",
        description="'roman': the Roman-numeral progression; 'functional': tonic/predominant/dominant functions; "
        "'cadences': the cadences at phrase endings and their types.",
    )


@tool("harmony_analysis", arguments=HarmonyArgs, scope=READ, group="music_analysis")
def harmony_analysis(caller: Caller, args: HarmonyArgs) -> dict[str, Any]:
    """Analyse the harmony as a Roman-numeral progression, as harmonic functions, or as cadences, on the harmonies
    chord_analysis lists (decorations folded in, the same Roman-numeral style), repeated chords counted once.
    Cadences are read at the phrase ends of the melody (the part named Soprano, else the highest part with
    fermatas): fermatas, else notes before a rest, and the last note; the closing chord is the one sounding after
    the suspensions under the final note resolve, the chord before it the last one on another root.

    Returns:
    - key: the score's key (`F# minor`); analysis_type.
    - roman: progression (measure, beat, roman_numeral) and figures (the numerals space-separated).
    - functional: functions (measure, beat, roman_numeral, function: tonic for I/iii/vi, predominant for ii/IV,
      dominant for V/viio, `dominant of V` for a secondary dominant), counts per function (tonic, predominant,
      dominant, secondary dominant) and summary (`T PD D D/V`).
    - cadences: each with measure (printed bar number) and beat (1-based) of the melody's final note, kind
      (perfect authentic, imperfect authentic, half, plagal, deceptive or other), variant (`phrygian` for iv6-V in
      minor, else null), key (the key it cadences in: the score's, or the one the phrase turns to, `A major`),
      chords (the two Roman numerals in that key) and chords_in_home_key; count; melody: the part read for
      the phrase ends (part: 0-based index, part_label)."""
    return _analysed(
        caller,
        "harmony_analysis",
        args,
        lambda music: harmony.harmony_analysis(music, analysis_type=args.analysis_type),
    )


@tool("voice_leading_analysis", arguments=ScoreArgs, scope=READ, group="music_analysis")
def voice_leading_analysis(caller: Caller, args: ScoreArgs) -> dict[str, Any]:
    """Find parallel fifths and octaves, deliberate doublings and voice crossings between every pair of parts.

    Parallels are two parts moving in similar motion from one perfect fifth (octave, unison; compound or not, as
    spelled) into another; fifths or octaves by contrary motion are not counted. Two parts in octaves or unison for 3
    or more notes in a row double each other on purpose (colla parte, cello and bass): that passage is one `doublings`
    entry, and its octaves are not errors. Onsets are compared exactly (tuplets included).

    Returns:
    - `parts`: every part as `{"part": 0-based index, "part_label": name}`; `upper`/`lower` below use the same form.
    - `parallel_fifths`, `parallel_octaves`: each `{type, upper, lower, measure, beat, from, to}`: printed bar number
      and 1-based beat where the second perfect interval arrives; `from`/`to` are `{"upper": "F5", "lower": "Bb4"}`.
    - `doublings`: `{upper, lower, interval ("octave"/"unison"), start, end ({measure, beat}), notes (count),
      parallel_octaves (count inside)}`.
    - `voice_crossings` (neighbouring parts only): `{upper, lower, measure, beat, pitches, detail}`.
    - `summary`: the count of each list."""
    return _analysed(caller, "voice_leading_analysis", args, voiceleading.voice_leading_analysis)


class PatternArgs(ScoreArgs):
    pattern_type: Literal["melodic", "rhythmic", "both"] = Field("both", description="Which patterns to look for.")
    min_length: int = Field(3, ge=2, le=8, description="Shortest motif, in notes.")
    uniform_rhythms: bool = Field(
        False, description="Also report rhythms of one repeated duration (quarter after quarter), left out by default."
    )


@tool("pattern_recognition", arguments=PatternArgs, scope=READ, group="music_analysis")
def pattern_recognition(caller: Caller, args: PatternArgs) -> dict[str, Any]:
    """Find repeated melodic motifs and rhythmic patterns in every part with their locations, and the phrase
    structure of the top part.

    Motifs are matched by scale steps, so transpositions and diatonic sequences (the same steps a step higher, with
    other semitones) are found. Only maximal patterns are listed (not every shorter piece of a longer one), each
    occurrence once (overlapping repeats of the same run are not counted twice).

    Returns:
    - `melodic_patterns`: `{length (notes), steps (scale steps between neighbours, +1 = a step up), intervals
      (semitones, first occurrence), kind ("exact": same semitones every time; "diatonic sequence": same steps,
      other semitones), occurrences, transposed (bool), locations}`.
    - `rhythmic_patterns`: `{length, durations (quarter notes), occurrences, locations}`.
    - each location: `{part (0-based index), part_label, measure (printed bar number), beat (1-based), notes
      (pitches, e.g. "Bb4")}`; melodic ones add their own `intervals`.
    - `phrases`: the top part's phrases `{part, part_label, start, end ({measure, beat}), notes (count),
      quarter_length (quarter notes), final_pitch}`; `phrase_structure`: their count and lengths in quarters."""
    return _analysed(
        caller,
        "pattern_recognition",
        args,
        lambda music: patterns.pattern_recognition(
            music, pattern_type=args.pattern_type, min_length=args.min_length, uniform_rhythms=args.uniform_rhythms
        ),
    )


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
    melody_part: Annotated[int, Field(ge=0)] | Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        None,
        description="The part holding the melody: its 0-based index or its label. By default the first part "
        "labelled Soprano, Melody, Voice or Cantus, else the part whose notes lie highest on average.",
    )
    new_score_id: NewScoreId = None


@tool("harmonize_melody", arguments=HarmonizeArgs, scope=WRITE, group="composition")
def harmonize_melody(caller: Caller, args: HarmonizeArgs) -> dict[str, Any]:
    """Harmonise a score's melody in four voices (SATB) in the given style; stores the voices asked for as a new score.

    Chords and voicings are chosen together: no consecutive fifths or octaves between any two voices, no voice
    crossing, every chord with its root and third, the final tonic chord complete, the voices within their
    textbook ranges (S C4-G5, A G3-D5, T C3-G4, B E2-C4) and spacing (an octave at most between soprano and alto
    and between alto and tenor, a twelfth between tenor and bass). A melody mostly outside the soprano's range
    moves the lower voices by whole octaves, with a warning, rather than crowding them onto its notes.

    Returns:
    - new_score_id, title, parts, measures, notes: the stored score (measures and notes are counts).
    - key: the key harmonised in, e.g. "F# minor"; style; voice_parts: the voices written, top down.
    - melody_part: {"part": 0-based index, "part_label": label} of the part used as the melody.
    - chords: how many chords (one per melody note that is not tied over); progression: their Roman numerals in
      order, "6" marking a first inversion.
    - checks: the four-part rules counted by music21 over all four voices (also those not written out):
      parallel_fifths, parallel_octaves (consecutive fifths and octaves/unisons between any two voices, similar or
      contrary motion), voice_crossings, out_of_range (notes outside the voice's range), spacing (adjacent voices
      too far apart), incomplete_final_chord (0 or 1).
    - violations: up to 20 of those breaks as {"rule", "bar" (printed measure number), "voices", "detail"}.
    - warnings: what a singer should know, e.g. melody notes outside the soprano range, with bar numbers.
    """
    score, music = _music(caller, args.score_id)
    result, info = composition.harmonize_melody(
        music, style=args.style, voice_parts=list(args.voice_parts), melody_part=args.melody_part
    )
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
    reports any rule violations an independent check finds.

    Returns:
    - new_score_id: the id the result is stored under (yours, for the other tools); title; parts, measures (measure
      objects), notes: its size.
    - species (1-4); voice_position: the counterpoint above or below the cantus; cantus_notes, counterpoint_notes:
      notes struck in each; final: the cantus's last note (spelled as written, e.g. `Bb`).
    - violations: each broken rule an independent check finds, with where (empty when the rules are kept)."""
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
    """Write a new melody in the style of one of your scores or of a corpus composer; stores it as a new score.

    Returns:
    - new_score_id: the id the result is stored under (yours, for the other tools); title; parts, measures (measure
      objects), notes: its size.
    - key (e.g. `Bb major`), time_signature, measures: of the new melody; seed: the random seed used (pass it
      again for the same melody); sources: works learnt from; notes: notes written; durations_learnt: the note
      lengths it chose from, in quarter notes."""
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
    """Transpose a score by an interval, key signatures included; stores the result as a new score.

    Returns:
    - new_score_id: the id the result is stored under (yours, for the other tools); title; parts, measures (measure
      objects), notes: its size.
    - interval: music21's name of the interval (e.g. `Major Second`); semitones; direction: up, down or none.
    - key_signature_before, key_signature_after: e.g. `3 sharps`, `none`."""
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
    """Engrave the score, or a range of its measures, as SVG notation.

    Returns:
    - svg: the page as SVG text; media_type: "image/svg+xml".
    - page: the page rendered (from 1); page_count: pages in the selection."""
    score, music = _music(caller, args.score_id)
    rendered = render_svg(music, measure_start=args.measure_start, measure_end=args.measure_end, page=args.page)
    return {"score_id": score.score_id, "media_type": "image/svg+xml", **rendered}


class NoArgs(ToolArguments):
    pass


@tool("health_check", arguments=NoArgs, scope=None, group="system")
def health_check(caller: Caller, args: NoArgs) -> dict[str, Any]:
    """Report whether the server and its database and cache are working, and its software versions.

    Returns:
    - healthy: true when every check is ok; checks: database and cache, each `ok` or `error: <kind>`.
    - versions: of music21, verovio and Python; parsed_scores_cached: scores this process keeps parsed; process:
      the id of the process that answered."""
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
