"""Chords and harmony of a whole score. Pure functions from a music21 stream to a dict.

The stream comes from the shared parsed-score cache, so nothing here may change it: music21 calls that would
(`chordify`, `stripTies`, `transpose`) make new streams, and nothing is inserted into the original. Each chord's
Roman numeral is written in one textbook style (apps.tools.services.figures); cadences are read by
apps.tools.services.cadences."""

from __future__ import annotations

import copy
import itertools
from dataclasses import replace
from fractions import Fraction
from functools import lru_cache
from math import isclose, isfinite
from typing import Any

from music21 import chord, note, pitch, stream
from music21.common.numberTools import opFrac
from music21.meter import MeterException, TimeSignature

from apps.core.errors import AnalysisError
from apps.tools.services.cadences import cadences, melody_part, parts_of
from apps.tools.services.derived import derived, sounding
from apps.tools.services.figures import (
    Chord,
    Tonality,
    chord_of,
    harmonic_function,
    roman_figure,
    step_of,
    tertian_root,
)
from apps.tools.services.keys import score_key
from apps.tools.services.rounding import rounded
from apps.tools.services.spelling import pitch_name
from apps.tools.services.summary import part_label

# --- The chords of a score ----------------------------------------------------------------------------------------


def _steps_apart(a: pitch.Pitch, b: pitch.Pitch) -> bool:
    return 0 < abs(a.ps - b.ps) <= 2 and abs(step_of(a) + 7 * (a.octave or 0) - step_of(b) - 7 * (b.octave or 0)) == 1


def _decorates(
    now: tuple[pitch.Pitch, ...], before: tuple[pitch.Pitch, ...], after: tuple[pitch.Pitch, ...], *, known_tones: bool
) -> bool:
    """Whether each note of `now` that is new to `before` came by step from a note of `before` and leaves by step (a
    passing or neighbour note), or is a single note kept into `after` (an anticipation). When `before` has
    `known_tones` (a stack of thirds as sounded, not the guessed chord of an unresolved dissonance), an upper voice
    that leaps to another of its tones brings nothing new (bwv103.6 bar 4, the tenor's F#4-C#4 under V); a bass
    that does changes the chord's inversion (I - I6)."""
    names_before = {p.name if known_tones else p.nameWithOctave for p in before}
    names_after = {p.nameWithOctave for p in after}
    new = [p for p in now[1:] if (p.name if known_tones else p.nameWithOctave) not in names_before]
    if now[0].nameWithOctave != before[0].nameWithOctave:
        new.insert(0, now[0])
    if not new:
        return True
    for p in new:
        approached = any(_steps_apart(q, p) for q in before)
        left = p.nameWithOctave not in names_after and any(_steps_apart(p, q) for q in after)
        anticipated = len(new) == 1 and p.nameWithOctave in names_after
        if not (approached and (left or anticipated)):
            return False
    return True


def _resolves_into(now: Chord, sounding: tuple[pitch.Pitch, ...], after: Chord, dissonant: bool) -> bool:
    """A suspension or appoggiatura: `now` (all of whose notes are `sounding`) is no stack of thirds (`dissonant`),
    or a seventh chord or one without a third before a consonant triad; it has the bass of `after`, and each of its
    notes that `after` lacks moves to `after` by step (a 4-3 or 9-8 over the same bass, a 6-5 onto a triad)."""
    if not (dissonant or (after.is_triad and not now.is_triad)):
        return False
    names_after = {p.name for p in after.pitches}
    return sounding[0].name == after.bass.name and all(
        any(_steps_apart(p, q) for q in after.pitches) for p in sounding if p.name not in names_after
    )


def _ornaments(between: Slice, now: tuple[pitch.Pitch, ...], resolution: tuple[pitch.Pitch, ...]) -> bool:
    """Whether the slice `between` a dissonance (`now`) and its `resolution` only ornaments the resolution: it comes
    on a weaker part of the beat over the same bass, and each of its notes that `now` lacks moves by step into
    `resolution` (the 4 of a 4-3 going down to the 2 before the 3)."""
    pitches, _, _, _, beat = between
    names_now = {p.nameWithOctave for p in now}
    return (
        beat % 1 != 0
        and pitches[0].nameWithOctave == now[0].nameWithOctave
        and all(any(_steps_apart(p, q) for q in resolution) for p in pitches if p.nameWithOctave not in names_now)
    )


def _suspended_over(now: tuple[pitch.Pitch, ...], after: tuple[pitch.Pitch, ...]) -> tuple[pitch.Pitch, ...] | None:
    """The chord of a suspension that resolves as the bass moves on (bwv66.6 bar 8: C#4 and E4 held over B2 go down
    to B3 and D4 as the bass goes to C#3): the bass of `now`, the notes a third, fifth or octave above it, and the
    notes the others go down to by step in `after`, if those make a triad on the bass; None otherwise."""
    bass = now[0]
    tones = [bass]
    resolved = False
    for p in now[1:]:
        if (step_of(p) - step_of(bass)) % 7 in (0, 2, 4):
            tones.append(p)
            continue
        below = [q for q in after if q.ps < p.ps and _steps_apart(p, q) and q.ps > bass.ps]
        if not below:
            return None
        tones.append(below[0])
        resolved = True
    pitches = tuple(sorted(set(tones), key=lambda p: p.ps))
    root = tertian_root(pitches)
    if not resolved or root is None or root.name != bass.name:
        return None
    return pitches


def _resolution(slices: list[Slice], raw: list[Chord], tertian: list[bool], index: int) -> int | None:
    """Where the slice at `index` resolves (`_resolves_into`), if it is a suspension or appoggiatura: into the next
    slice, or into the one after when the slice between only ornaments the resolution (bwv26.6 bar 10: the alto's
    4, D4, goes down to B3 on the half beat before its 3, C#4). A resolution is a stack of thirds itself: a
    dissonance moving into another (a neighbour note reaching the beat, bwv103.6 bar 4) resolves nothing yet."""
    sounding = slices[index][0]
    for target in range(index + 1, min(index + 3, len(slices))):
        if target == index + 2 and not _ornaments(slices[index + 1], sounding, slices[target][0]):
            return None
        if tertian[target] and _resolves_into(raw[index], sounding, raw[target], not tertian[index]):
            return target
    return None


Slice = tuple[tuple[pitch.Pitch, ...], float, float, "int | None", float]


def _chordified_slices(chordified: stream.Score) -> list[Slice]:
    """Each sounding slice of `chordify`'s result as (pitches low to high, offset, quarter_length, measure, beat).

    Beats come from each measure's time signature: asking every chord for its `beat` searches its contexts, which
    took as long as `chordify` itself (a Beethoven quartet movement: 5 s of 16); the answers are the same."""
    measures = list(chordified.getElementsByClass(stream.Measure))
    if not measures:
        return [
            (
                tuple(sorted(ch.pitches, key=lambda p: p.ps)),
                float(ch.offset),
                float(ch.quarterLength),
                None,
                _beat_or(float(ch.beat), float(ch.offset)),
            )
            for ch in chordified.flatten().getElementsByClass(chord.Chord)
            if ch.pitches
        ]
    slices: list[Slice] = []
    meter = None
    for measure in measures:
        meter = measure.timeSignature or meter
        for ch in measure.recurse().getElementsByClass(chord.Chord):
            if not ch.pitches:
                continue
            position = float(ch.offset) + float(measure.paddingLeft)
            beat = _beat(meter, position)
            slices.append(
                (
                    tuple(sorted(ch.pitches, key=lambda p: p.ps)),
                    float(measure.offset) + float(ch.offset),
                    float(ch.quarterLength),
                    measure.number,
                    beat,
                )
            )
    return slices


Span = tuple["float | Fraction", "float | Fraction", note.GeneralNote]


def _beat(meter: TimeSignature | None, position: float) -> float:
    """The beat (from 1) at `position` quarter notes from the start of a full bar under `meter`, as music21 counts
    it: past the end of a bar longer than its meter, on from the bar's start modulo the meter's length
    (`TimeSignature.getMeasureOffsetOrMeterModulusOffset`); with no meter, the quarter note (`position + 1`)."""
    if meter is None:
        return position + 1
    try:
        return float(meter.getBeatProportion(position))
    except MeterException:  # a bar longer than its meter (an extra beat, a part's miscounted bar)
        return float(meter.getBeatProportion(opFrac(position % meter.barDuration.quarterLength)))


def _beat_or(beat: float, offset: float) -> float:
    """music21's `beat`, which is NaN without a meter: then the quarter note from the start, as `_beat` says."""
    return beat if isfinite(beat) else offset + 1


def _spans(measure: stream.Measure) -> list[Span]:
    """The notes and rests of one measure, its voices' included, as (start, end, element) within the measure."""
    found = []
    for element in measure.notesAndRests:
        begin = measure.elementOffset(element)
        found.append((begin, opFrac(begin + element.quarterLength), element))
    for voice in measure.voices:
        for element in voice.notesAndRests:
            begin = opFrac(measure.elementOffset(voice) + voice.elementOffset(element))
            found.append((begin, opFrac(begin + element.quarterLength), element))
    return found


def _sounding(spans: list[Span], at: float | Fraction) -> tuple[pitch.Pitch, ...]:
    """The pitches `chordify` puts in its chord at `at`: every note starting or sounding then, once per spelled
    pitch and octave, ordered as its chord orders them (by letter and octave, then semitone) and then low to high.
    The score's own pitch objects, not copies: callers only read them."""
    found: dict[str, pitch.Pitch] = {}
    for begin, end, element in spans:
        if not (begin == at or begin < at < end):
            continue
        if isinstance(element, note.Note):
            members = [element]
        elif isinstance(element, chord.ChordBase):
            members = [n for n in element if isinstance(n, note.Note)]
        else:
            continue
        for member in members:
            found.setdefault(member.pitch.nameWithOctave, member.pitch)
    in_chord = sorted(found.values(), key=lambda p: (p.diatonicNoteNum, p.ps))
    return tuple(sorted(in_chord, key=lambda p: p.ps))


def _slices(music: stream.Score) -> list[Slice]:
    """Each sounding slice of the score as it sounds, as `chordify` slices it, as (pitches low to high, offset,
    quarter_length, measure, beat).

    Every part is read at sounding pitch (apps.tools.services.derived.sounding): the slices are those of
    `music.toSoundingPitch().chordify()`. `chordify` alone converts only a score whose first part is at written
    pitch, so that a violin above a Bb clarinet would be sliced with the clarinet's written notes.

    `chordify` builds a chord of deep-copied notes for every slice and a score of every measure to find them, most
    of the harmony tools' time. The slices are read here as it reads them: measure by measure of the first part
    (its template), at every start and end of a note or rest of any part's measure of the same index, the notes
    sounding then. A score without parts or measures is still chordified."""
    work = sounding(music)
    streams = list(work.parts) if work.hasPartLikeStreams() else []
    parts = [list(part.getElementsByClass(stream.Measure)) for part in streams]
    if not parts or not parts[0]:
        return _chordified_slices(work.chordify())
    # By site, not `.offset`: that is the offset in the active site, which another thread's music21 call on the
    # same shared score (`measure()`, `chordify`) may move to a stream of its own.
    starts = [float(measure.getOffsetBySite(streams[0])) for measure in parts[0]]
    slices: list[Slice] = []
    meter = None
    for index, measure in enumerate(parts[0]):
        meter = measure.timeSignature or meter
        spans = [span for measures in parts if index < len(measures) for span in _spans(measures[index])]
        points = sorted({point for begin, end, _ in spans for point in (begin, end)} | {0})
        for offset, end in itertools.pairwise(points):
            if isclose(offset, end, abs_tol=1e-7):
                continue
            pitches = _sounding(spans, offset)
            if not pitches:
                continue
            position = float(offset) + float(measure.paddingLeft)
            beat = _beat(meter, position)
            length = float(opFrac(end - offset))
            slices.append((pitches, starts[index] + float(offset), length, measure.number, beat))
    return slices


def chords(music: stream.Score) -> list[Chord]:
    """The score's harmonies (all parts sounded together), one per change of harmony.

    `chordify` slices at every onset in any part; a slice whose new notes arrive and leave by step (passing and
    neighbour notes, anticipations) belongs to the chord before it, and a slice that is no chord but resolves by
    step over the same bass (a suspension, an appoggiatura, its resolution ornamented or not) belongs to the chord
    after it; one whose suspensions resolve as the bass moves on is the chord they resolve to over its own bass.
    Computed once per parsed score (apps.tools.services.derived), from the music as it sounds: the list and its
    chords are shared, read-only."""
    music = sounding(music)
    return derived(music, "harmonies", lambda: _harmonies(music))


def _harmonies(music: stream.Score) -> list[Chord]:
    slices = _slices(music)
    roots = [tertian_root(slice_[0]) for slice_ in slices]
    raw = [chord_of(*slice_, stacked_on=root) for slice_, root in zip(slices, roots, strict=True)]
    tertian = [root is not None for root in roots]
    harmonies: list[Chord] = []
    index = 0
    while index < len(raw):
        current = raw[index]
        target = _resolution(slices, raw, tertian, index)
        known_tones = tertian[index] or target is not None
        if target is not None:
            # The chord is the resolution, from the dissonance's onset to the resolution's end.
            resolved = raw[target]
            length = resolved.offset + resolved.quarter_length - current.offset
            current = replace(
                resolved, offset=current.offset, quarter_length=length, measure=current.measure, beat=current.beat
            )
            index = target
        elif not tertian[index] and index + 1 < len(slices):
            suspended = _suspended_over(slices[index][0], slices[index + 1][0])
            if suspended is not None:
                current = chord_of(suspended, *slices[index][1:], stacked_on=suspended[0])
                known_tones = True
        harmonies.append(current)
        index += 1
        while index < len(raw):
            now, _, _, _, beat = slices[index]
            after = slices[index + 1][0] if index + 1 < len(slices) else ()
            off_beat = beat % 1 != 0
            if not (off_beat and _decorates(now, harmonies[-1].pitches, after, known_tones=known_tones)):
                break
            harmony = harmonies[-1]
            added = raw[index]
            seventh = added.root.name == harmony.root.name and harmony.seventh is None and added.seventh is not None
            # A passing seventh over the same root and bass (V - V7) makes the chord a seventh chord; one in the
            # bass (I - passing 7 - IV6) only passes: the chord keeps the bass it has on the beat.
            if seventh and now[0].name == harmony.bass.name:
                pitches = tuple(sorted({*harmony.pitches, *added.pitches}, key=lambda p: p.ps))
                harmony = replace(harmony, pitches=pitches, seventh=added.seventh)
            harmonies[-1] = replace(harmony, quarter_length=added.offset + added.quarter_length - harmony.offset)
            index += 1
    return harmonies


def _labelled(music: stream.Score, harmonies: list[Chord], in_key: Tonality) -> list[str | None]:
    """The Roman numeral of each harmony in `in_key`, worked out once per score and key; None for a lone note (a
    melody alone, a unison): one pitch is no chord, and naming it as the root of one (music21 makes A4 `vi` in C
    major) would invent a harmony."""

    def figures() -> list[str | None]:
        chords_only = [None if c.is_lone_note else c for c in harmonies]
        following = [*chords_only[1:], None]
        return [
            None if c is None else roman_figure(c, in_key, after)
            for c, after in zip(chords_only, following, strict=True)
        ]

    return derived(music, ("figures", in_key.name), figures)


@lru_cache(maxsize=4096)
def _common_name(names: tuple[str, ...]) -> str:
    """music21's name of the chord of these pitches (`major triad`): a pure function of the spelled pitches, and
    a `chord.Chord` costs ~0.2 ms to build."""
    return chord.Chord([pitch.Pitch(name) for name in names]).commonName


def _chord_name(c: Chord) -> str:
    names = tuple(p.nameWithOctave for p in c.pitches)
    if any(p.ps != round(p.ps) for p in c.pitches):  # microtones: their names do not say all, and they are rare
        common = chord.Chord([copy.deepcopy(p) for p in c.pitches]).commonName
    else:
        common = _common_name(names)
    return f"{pitch_name(c.root)} {common}"


def chord_analysis(music: stream.Score, *, limit: int = 500) -> dict[str, Any]:
    """Every harmony of the score with measure, beat, length, pitches, common name and Roman numeral in the
    score's key; all at sounding pitch."""
    music = sounding(music)
    in_key = Tonality.of(score_key(music))
    harmonies = chords(music)
    figures = _labelled(music, harmonies, in_key)
    return {
        "key": in_key.name,
        "chord_count": len(harmonies),
        "chords": [
            {
                "measure": c.measure,
                "beat": c.beat,
                "quarter_length": rounded(c.quarter_length),
                "pitches": [pitch_name(p, octave=True) for p in c.pitches],
                "root": pitch_name(c.root),
                "bass": pitch_name(c.bass),
                "name": _chord_name(c),
                "roman_numeral": figure,
            }
            for c, figure in zip(harmonies[:limit], figures, strict=False)
        ],
        "truncated": len(harmonies) > limit,
    }


# --- Harmony ------------------------------------------------------------------------------------------------------

_FUNCTION_SYMBOLS = {"tonic": "T", "predominant": "PD", "dominant": "D"}


def harmony_analysis(music: stream.Score, *, analysis_type: str = "roman") -> dict[str, Any]:
    """The harmony as a Roman-numeral progression ('roman'), as tonic/predominant/dominant functions
    ('functional'), or as the cadences at the phrase endings ('cadences'); all at sounding pitch."""
    if analysis_type not in ("roman", "functional", "cadences"):
        raise AnalysisError(f"Unknown analysis_type {analysis_type!r}; use roman, functional or cadences.")
    music = sounding(music)
    in_key = Tonality.of(score_key(music))
    harmonies = chords(music)
    base = {"key": in_key.name, "analysis_type": analysis_type}
    if analysis_type == "cadences":
        found = cadences(music, [c for c in harmonies if not c.is_lone_note], in_key)
        melody = melody_part(music)
        parts = parts_of(music)
        index = next((i for i, part in enumerate(parts) if part is melody), 0)
        return {
            **base,
            "melody": {"part": index, "part_label": part_label(melody, index)},
            "cadences": found,
            "count": len(found),
        }
    progression = _merge_repeats(harmonies, _labelled(music, harmonies, in_key))
    if analysis_type == "roman":
        return {
            **base,
            "progression": [{"measure": c.measure, "beat": c.beat, "roman_numeral": f} for c, f in progression],
            "figures": " ".join(f for _, f in progression),
        }
    functions = [harmonic_function(f, c, in_key) for c, f in progression]
    kinds = ["secondary dominant" if f.startswith("dominant of") else f for f in functions]
    return {
        **base,
        "functions": [
            {"measure": c.measure, "beat": c.beat, "roman_numeral": f, "function": function}
            for (c, f), function in zip(progression, functions, strict=True)
        ],
        "counts": {name: kinds.count(name) for name in ("tonic", "predominant", "dominant", "secondary dominant")},
        "summary": " ".join(_FUNCTION_SYMBOLS.get(f, "D/" + f.rsplit(" ", 1)[-1]) for f in functions),
    }


def _merge_repeats(harmonies: list[Chord], figures: list[str | None]) -> list[tuple[Chord, str]]:
    """The harmonies with a numeral (lone notes left out), a chord repeated without another between counted once."""
    merged: list[tuple[Chord, str]] = []
    for c, figure in zip(harmonies, figures, strict=True):
        if figure is not None and (not merged or merged[-1][1] != figure):
            merged.append((c, figure))
    return merged
