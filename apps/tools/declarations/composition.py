"""The tools that write music: harmonisation, counterpoint, style imitation and transposition."""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

from music21 import stream
from pydantic import Field, model_validator

from apps.core.errors import InvalidArguments
from apps.security.scopes import WRITE
from apps.tools.declarations.common import NewScoreId, ScoreId, score_and_music, stored_score_reply
from apps.tools.invocation import Caller
from apps.tools.registry import ToolArguments, tool
from apps.tools.services import composition
from apps.tools.services.corpus import composer_paths
from apps.tools.services.parsing import parse_corpus_work
from apps.tools.services.scores import score_store_generated

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
    moves the lower voices by whole octaves, with a warning, rather than crowding them onto its notes. A melody
    note outside the key (F# in C major) is never set against its own letter with another accidental (an F).

    Returns:
    - new_score_id, title, parts, measures, notes: the stored score (measures and notes are counts).
    - key: the key harmonised in, e.g. "F# minor": the score's, or, when the melody's last note is not in its tonic
      chord, the likeliest key correlating nearly as well (within 0.1) whose tonic chord holds it; style;
      voice_parts: the voices written, top down.
    - melody_part: {"part": 0-based index, "part_label": label} of the part used as the melody.
    - chords: how many chords (one per melody note that is not tied over); progression: their Roman numerals in
      order, "6" marking a first inversion.
    - checks: the four-part rules counted by music21 over all four voices (also those not written out):
      parallel_fifths, parallel_octaves (consecutive fifths and octaves/unisons between any two voices, similar or
      contrary motion), voice_crossings, out_of_range (notes outside the voice's range), spacing (adjacent voices
      too far apart), incomplete_final_chord (0 or 1).
    - violations: up to 20 of those breaks as {"rule", "bar" (printed measure number), "voices", "detail"}.
    - warnings: what a singer should know, e.g. melody notes outside the soprano range, with bar numbers, or a
      melody written for a transposing instrument (read, and the voices written, at sounding pitch).
    """
    score, music = score_and_music(caller, args.score_id)
    result, info = composition.harmonize_melody(
        music, style=args.style, voice_parts=list(args.voice_parts), melody_part=args.melody_part
    )
    new = score_store_generated(
        owner=caller.user, parent=score, music=result, derivation="harmonized", score_id=args.new_score_id
    )
    return stored_score_reply(new, info)


class CounterpointArgs(ToolArguments):
    score_id: ScoreId
    species: int = Field(1, ge=1, le=5, description="Fux species, 1 (note against note) to 5 (florid).")
    voice_position: Literal["above", "below"] = Field("above", description="Counterpoint above or below the cantus.")
    new_score_id: NewScoreId = None


@tool("generate_counterpoint", arguments=CounterpointArgs, scope=WRITE, group="composition")
def generate_counterpoint(caller: Caller, args: CounterpointArgs) -> dict[str, Any]:
    """Write species counterpoint against the score's top part as cantus firmus; stores the two-part result and
    reports any rule violations an independent check finds. The cantus is read, and both parts written, at
    sounding pitch (a clarinet in Bb's written D is the C it plays).

    Returns:
    - new_score_id: the id the result is stored under (yours, for the other tools); title; parts, measures (measure
      objects), notes: its size.
    - species (1-5); voice_position: the counterpoint above or below the cantus; cantus_notes, counterpoint_notes:
      notes struck in each; final: the cantus's last note at sounding pitch, spelled (e.g. `Bb`).
    - violations: each broken rule an independent check finds, with where (empty when the rules are kept)."""
    score, music = score_and_music(caller, args.score_id)
    result, info = composition.generate_counterpoint(music, species=args.species, voice_position=args.voice_position)
    new = score_store_generated(
        owner=caller.user, parent=score, music=result, derivation="counterpoint", score_id=args.new_score_id
    )
    return stored_score_reply(new, info)


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
    - key (e.g. `Bb major`), time_signature, measures: of the new melody, in the key and meter most of the music
      learnt from is in (notes outside the key's scale spelled as the key spells them: E# in F# minor); seed: the
      random seed used (pass it again for the same melody); sources: works learnt from; notes: notes written;
      durations_learnt: the note lengths it chose from, in quarter notes."""
    parent = None
    if args.score_id is not None:
        parent, music = score_and_music(caller, args.score_id)
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
    return stored_score_reply(new, info)


# How many corpus works a composer imitation learns from: enough for a varied model, few enough to stay quick.
COMPOSER_SAMPLE = 8


@functools.lru_cache(maxsize=8)
def _composer_sources(composer: str) -> tuple[stream.Score, ...]:
    if not composer.isidentifier():
        raise InvalidArguments(f"{composer!r} is not a composer name in the music21 corpus (for example 'bach').")
    paths = composer_paths(composer)
    scores: list[stream.Score] = []
    for path in sorted(paths, key=str)[: COMPOSER_SAMPLE * 3]:
        parsed = parse_corpus_work(path)
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
    - interval: the interval transposed by, as music21 names it (`M2`; `m-3` down a minor third): the one asked
      for, or the one of as many semitones a letter away (`d5` for `A4`) when the asked one would write a key
      signature of more than seven sharps or flats (F# minor up `A4` is C minor, not B# minor in nine sharps);
      semitones; direction: up, down or none.
    - key_signature_before, key_signature_after: the opening signature at concert pitch, e.g. `3 sharps`,
      `no sharps or flats` (`none` for music without one).
    - warnings: an interval respelled, and why."""
    score, music = score_and_music(caller, args.score_id)
    result, info = composition.transpose(music, interval=args.interval)
    new = score_store_generated(
        owner=caller.user, parent=score, music=result, derivation="transposed", score_id=args.new_score_id
    )
    return stored_score_reply(new, info)
