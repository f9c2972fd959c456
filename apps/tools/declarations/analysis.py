"""The analysis tools: key, chords, harmony, voice leading, patterns, and the corpus."""

from __future__ import annotations

from typing import Any, Literal

from music21 import stream
from pydantic import Field, model_validator

from apps.security.scopes import READ
from apps.tools.corpus_jobs import corpus_job_run
from apps.tools.declarations.common import ScoreArgs
from apps.tools.invocation import Caller
from apps.tools.registry import ToolArguments, tool
from apps.tools.services import harmony, keys, patterns, voiceleading
from apps.tools.services.corpus import corpus_select


class KeyArgs(ScoreArgs):
    algorithm: Literal["all", "aarden", "krumhansl", "bellman", "temperley", "simple"] = Field(
        "all", description="Key-finding profile; 'all' runs every one and reports their agreement."
    )


@tool("key_analysis", arguments=KeyArgs, scope=READ, group="music_analysis", remembered=True)
def key_analysis(music: stream.Score, args: KeyArgs) -> dict[str, Any]:
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
    - key_signature (`6 sharps`) and key_signature_keys (`F# major / D# minor`) of the opening signature at concert
      pitch (Weber's clarinet concertino: `3 flats`, not the clarinet in Bb's written `1 flat`).
    - algorithm: the profile the key comes from; alternatives: the next 4 keys with their correlation;
      by_algorithm: each profile's key, tonic, mode and correlation."""
    return keys.key_analysis(music, algorithm=args.algorithm)


class ChordArgs(ScoreArgs):
    limit: int = Field(500, ge=1, le=5000, description="At most this many chords in the answer.")


@tool("chord_analysis", arguments=ChordArgs, scope=READ, group="music_analysis", remembered=True)
def chord_analysis(music: stream.Score, args: ChordArgs) -> dict[str, Any]:
    """List the score's harmonies (all parts sounded together) with measure, beat, pitches and Roman numeral in
    the score's key. A slice that only decorates a chord is folded into it: passing and neighbour notes and
    anticipations into the chord before, suspensions and appoggiaturas into the chord they resolve to. Roman
    numerals follow one textbook style: case for the third (V, ii), o/ø/+ for diminished, half-diminished and
    augmented, 6/64 and 7/65/43/42 for inversions, b/# only for a root outside the key (in minor VI, VII and viio
    are the key's own), secondary dominants as V7/V or viio7/ii. A chord without a third takes the one the key has
    above its root (C-G in C major: I; C-Bb-G in G minor: iv7), minor under a diminished fifth (E-Bb-D: ø7). A lone
    note (a melody alone, a unison) is no chord and has no numeral.

    Returns:
    - key: the score's key (`F# minor`); chord_count: how many harmonies; truncated: true when more than limit.
    - chords: each with measure (printed bar number), beat (1-based), quarter_length (its length in quarter notes),
      pitches (low to high, `C#5`), root and bass (`F#`), name (`A major triad`) and roman_numeral (`V6/III`; null
      for a lone note)."""
    return harmony.chord_analysis(music, limit=args.limit)


class HarmonyArgs(ScoreArgs):
    analysis_type: Literal["roman", "functional", "cadences"] = Field(
        "roman",
        description="'roman': the Roman-numeral progression; 'functional': tonic/predominant/dominant functions; "
        "'cadences': the cadences at phrase endings and their types.",
    )


@tool("harmony_analysis", arguments=HarmonyArgs, scope=READ, group="music_analysis", remembered=True)
def harmony_analysis(music: stream.Score, args: HarmonyArgs) -> dict[str, Any]:
    """Analyse the harmony as a Roman-numeral progression, as harmonic functions, or as cadences, on the harmonies
    chord_analysis lists (decorations folded in, the same Roman-numeral style), repeated chords counted once and
    lone notes (no chords) left out.
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
      (perfect authentic, imperfect authentic, half, plagal, deceptive or other; iii6 over the dominant bass, the
      dominant with a 6, closes as V does), variant (`phrygian` for iv6-V in minor, else null), key (the key it
      cadences in: the score's, or the one the phrase turns to, `A major`), chords (the two Roman numerals in that
      key) and chords_in_home_key; count; melody: the part read for the phrase ends (part: 0-based index,
      part_label)."""
    return harmony.harmony_analysis(music, analysis_type=args.analysis_type)


@tool("voice_leading_analysis", arguments=ScoreArgs, scope=READ, group="music_analysis", remembered=True)
def voice_leading_analysis(music: stream.Score, args: ScoreArgs) -> dict[str, Any]:
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
    return voiceleading.voice_leading_analysis(music)


class PatternArgs(ScoreArgs):
    pattern_type: Literal["melodic", "rhythmic", "both"] = Field("both", description="Which patterns to look for.")
    min_length: int = Field(3, ge=2, le=8, description="Shortest motif, in notes.")
    uniform_rhythms: bool = Field(
        False, description="Also report rhythms of one repeated duration (quarter after quarter), left out by default."
    )


@tool("pattern_recognition", arguments=PatternArgs, scope=READ, group="music_analysis", remembered=True)
def pattern_recognition(music: stream.Score, args: PatternArgs) -> dict[str, Any]:
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
    return patterns.pattern_recognition(
        music, pattern_type=args.pattern_type, min_length=args.min_length, uniform_rhythms=args.uniform_rhythms
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
        # A work with no clear key (atonal: schoenberg/opus19) has `key` None, and is counted as "no clear key".
        modes = [r["key"].split()[-1] if r["key"] else "no clear key" for r in results if "key" in r]
        summary["modes"] = {mode: modes.count(mode) for mode in sorted(set(modes))}
    return {"analysis": args.analysis, "summary": summary, "results": results}
