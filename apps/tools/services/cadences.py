"""Cadences: read at the melody's phrase ends (its fermatas), after suspensions resolve. Pure functions from a
music21 stream to a dict; nothing here changes the stream (it comes from the shared parsed-score cache)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from math import isfinite
from typing import Any

from music21 import pitch, stream
from music21.sites import SitesException

from apps.tools.services.figures import Chord, Tonality, degree_of, figure_in, roman_figure, shifted, third_of
from apps.tools.services.rounding import rounded

# --- Cadences -----------------------------------------------------------------------------------------------------


def parts_of(music: stream.Stream) -> list[stream.Stream]:
    return list(music.parts) if isinstance(music, stream.Score) else []


def has_fermata(element: Any) -> bool:
    return not element.isRest and any(e.name == "fermata" for e in getattr(element, "expressions", ()))


def melody_part(music: stream.Score) -> stream.Stream:
    """The part that carries the tune: the one named Soprano, else the highest-sounding part with fermatas (a
    chorale's descant trumpet has few), else the highest-sounding part."""
    parts = parts_of(music)
    if not parts:
        return music
    for part in parts:
        if "sopran" in (part.partName or "").lower():
            return part

    def height(part: stream.Stream) -> float:
        pitches = [p.ps for n in part.recurse().notes for p in n.pitches]
        return sum(pitches) / len(pitches) if pitches else float("-inf")

    with_fermatas = [p for p in parts if any(has_fermata(n) for n in p.recurse().notes)]
    return max(with_fermatas or parts, key=height)


@dataclass
class PhraseEnd:
    """The last note of a phrase, its tied continuations included: where it starts and how long it is held."""

    offset: float
    quarter_length: float
    note: Any  # its first music21 note or chord (for the bar, the beat and the pitch)
    fermata: bool


def _held_notes(part: stream.Stream) -> list[PhraseEnd | None]:
    """The part's notes with their ties joined, rests as None. `stripTies` would do it by copying the part, which
    took 3 s of a Beethoven quartet movement's cadences."""
    containers = [(float(m.offset), m) for m in part.getElementsByClass(stream.Measure)] or [(0.0, part.flatten())]
    held: list[PhraseEnd | None] = []
    for base, container in containers:
        for element in container.recurse().notesAndRests:
            if element.isRest:
                held.append(None)
                continue
            fermata = has_fermata(element)
            if element.tie is not None and element.tie.type in ("stop", "continue") and held and held[-1] is not None:
                held[-1].quarter_length += float(element.quarterLength)
                held[-1].fermata = held[-1].fermata or fermata
                continue
            inner = float(element.activeSite.offset) if isinstance(element.activeSite, stream.Voice) else 0.0
            held.append(PhraseEnd(base + inner + float(element.offset), float(element.quarterLength), element, fermata))
    return held


def phrase_ends(part: stream.Stream) -> list[PhraseEnd]:
    """The notes that end a phrase of `part`: fermatas (chorales mark them so), else notes followed by a rest;
    the last note always ends one. Tied notes count as one, so a fermata note lasts as long as it is held."""
    held = _held_notes(part)
    ends = [held[i] for i in phrase_end_indexes([None if n is None else n.fermata for n in held])]
    return sorted(ends, key=lambda n: n.offset)  # type: ignore[union-attr]


def phrase_end_indexes(notes: list[bool | None]) -> list[int]:
    """Where phrases end in a line given as, for each note, whether it has a fermata (None for a rest): at the
    fermatas (chorales mark their phrases so), else at notes followed by a rest; the last note always ends one."""
    sounding = [i for i, fermata in enumerate(notes) if fermata is not None]
    ends = [i for i in sounding if notes[i]]
    if not ends:
        ends = [i for i in sounding if i + 1 < len(notes) and notes[i + 1] is None]
    if sounding and sounding[-1] not in ends:
        ends.append(sounding[-1])
    return ends


def _score_offsets(music: stream.Score, part: stream.Stream) -> Any:
    """A function from an offset in `part` to the offset of the same place in `chordify`'s result, which lays out
    the measures as the first part does. They can differ: in some corpus encodings (bwv171.6) the parts do not
    agree on a measure's length, so only the measure and the place in it identify a moment in every part."""
    own = [float(m.offset) for m in part.getElementsByClass(stream.Measure)]
    parts = parts_of(music)
    first = [float(m.offset) for m in parts[0].getElementsByClass(stream.Measure)] if parts else own
    if own == first or len(own) != len(first):
        return lambda offset: offset

    def to_score(offset: float) -> float:
        index = max(bisect.bisect_right(own, offset) - 1, 0)
        return first[index] + offset - own[index]

    return to_score


def _beat(element: Any, offset: float) -> float:
    """music21's beat of `element` (at `offset` in its part); with no meter, where music21's is NaN, the quarter
    note from the start of its bar, as the harmonies count it (apps.tools.services.harmony)."""
    beat = float(element.beat)
    if isfinite(beat):
        return rounded(beat) or 1.0
    bar = element.getContextByClass(stream.Measure)
    try:
        return rounded(float(element.getOffsetInHierarchy(bar)) + float(bar.paddingLeft) + 1)
    except (AttributeError, SitesException):  # no bar, or not found in it
        return rounded(offset + 1)


def cadences(music: stream.Score, harmonies: list[Chord], in_key: Tonality) -> list[dict[str, Any]]:
    """The cadence at each phrase end of the melody (see `melody_part`): the chord the phrase closes on, read
    after the non-chord tones under the final note have resolved, and the last chord on another root before it."""
    found: list[dict[str, Any]] = []
    melody = melody_part(music)
    to_score = _score_offsets(music, melody)
    for end in phrase_ends(melody):
        start = to_score(end.offset)
        stop = start + end.quarter_length
        under = [c for c in harmonies if c.offset < stop and c.offset + c.quarter_length > start]
        if not under:
            continue
        # The chord the phrase arrives on: the first consonant one under the final note (its suspensions are
        # folded into it), not a passing six-four nor what other parts play on while the melody holds (the
        # trumpets' postlude in bwv171.6). At the end of the piece the lower voices may go on to close under a
        # held final note (bwv10.7): there the last one.
        closing = [c for c in under if c.is_triad and c.inversion != 2] or under
        final = closing[-1] if stop >= harmonies[-1].offset + harmonies[-1].quarter_length else closing[0]
        before = [c for c in harmonies if c.offset < final.offset and c.root.name != final.root.name]
        if not before:
            continue
        penultimate = before[-1]
        top = max(end.note.pitches, key=lambda p: p.ps)
        cadence_key, kind, variant = _cadence(penultimate, final, top, in_key)
        found.append(
            {
                "measure": end.note.measureNumber,
                "beat": _beat(end.note, end.offset),
                "kind": kind,
                "variant": variant,
                "key": cadence_key.name,
                "chords": [roman_figure(penultimate, cadence_key, final), figure_in(final, cadence_key)],
                "chords_in_home_key": [roman_figure(penultimate, in_key, final), figure_in(final, in_key)],
            }
        )
    return found


def _cadence(penultimate: Chord, final: Chord, top: pitch.Pitch, home: Tonality) -> tuple[Tonality, str, str | None]:
    """The key a cadence is in, its kind and its variant ('phrygian' for iv6-V in minor). The home key is tried
    first; then the key the final chord is the tonic of (a tonicised close), the key it is the dominant of (a
    half close in another key) and the key the penultimate chord is the dominant of (a deceptive one)."""
    candidates = [home]
    if final.is_triad:
        candidates.append(Tonality(final.root, "minor" if final.third == 3 else "major"))
        if final.third == 4:
            below = shifted(final.root, 3, 5)
            majors, minors = Tonality(below, "major"), Tonality(below, "minor")
            distance = [abs(k.sharps - home.sharps) for k in (majors, minors)]
            candidates.append(majors if distance[0] <= distance[1] else minors)
    if penultimate.third == 4:
        candidates.append(Tonality(shifted(penultimate.root, 3, 5), "minor" if final.third == 4 else "major"))
    for in_key in candidates:
        kind, variant = _cadence_kind(penultimate, final, top, in_key)
        if kind != "other":
            return in_key, kind, variant
    return home, "other", None


def _cadence_kind(penultimate: Chord, final: Chord, top: pitch.Pitch, in_key: Tonality) -> tuple[str, str | None]:
    pen_degree, final_degree = degree_of(penultimate.root, in_key), degree_of(final.root, in_key)
    raised_seventh = (7, 1) if in_key.mode == "minor" else (7, 0)
    # A dominant seventh may leave out its third (F#-C#-E before B: the key's A# is implied, figures.third_of).
    dominant = (pen_degree == (5, 0) and third_of(penultimate, in_key) == 4) or (
        pen_degree == raised_seventh and penultimate.fifth == 6
    )
    bass_degree = degree_of(penultimate.bass, in_key)
    # The mediant in first inversion over the dominant bass, with the leading tone (iii6; III+6 in minor), is the
    # dominant with a 6 passing or leaning to its 5 or 7 (bwv103.6 bar 6: C#4 over E3 going to D4, then A major).
    dominant = dominant or (
        pen_degree[0] == 3
        and penultimate.inversion == 1
        and bass_degree == (5, 0)
        and any(degree_of(p, in_key) == raised_seventh for p in penultimate.pitches)
    )
    if final_degree == (1, 0) and final.is_triad:
        if dominant:
            perfect = bass_degree == (5, 0) and final.inversion == 0
            return (
                "perfect authentic" if perfect and degree_of(top, in_key) == (1, 0) else "imperfect authentic"
            ), None
        if pen_degree == (4, 0) or (pen_degree == (2, 0) and bass_degree == (4, 0)):
            return "plagal", None  # IV-I, or ii65 over the same bass
    if final_degree == (5, 0) and final.third == 4 and final.seventh is None:
        phrygian = in_key.mode == "minor" and pen_degree == (4, 0) and penultimate.inversion == 1
        return "half", "phrygian" if phrygian else None
    if dominant and final_degree[0] == 6 and final.is_triad:
        return "deceptive", None
    return "other", None
