"""Chords, Roman numerals and cadences of a whole score. Pure functions from a music21 stream to a dict.

The stream comes from the shared parsed-score cache, so nothing here may change it: music21 calls that would
(`chordify`, `stripTies`, `transpose`) make new streams, and nothing is inserted into the original."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from music21 import chord, interval, key, pitch, roman, stream

from apps.core.errors import AnalysisError
from apps.tools.services.keys import _round, score_key

# --- Chords -----------------------------------------------------------------------------------------------------

_TRIAD_INVERSIONS = {0: "", 1: "6", 2: "64"}
_SEVENTH_INVERSIONS = {0: "7", 1: "65", 2: "43", 3: "42"}


def roman_figure(rn: roman.RomanNumeral, in_key: key.Key) -> str:
    """The figure a musician would write: 'V7', 'viio6', 'VII' in minor, rather than music21's literal spelling
    of every accidental ('V75#3', 'bVII'); unusual chords keep music21's own figure."""
    numeral = rn.romanNumeralAlone
    prefix = rn.frontAlterationString
    # In minor, music21 writes the natural sixth and seventh degrees as 'bVI' and 'bVII'; harmony textbooks
    # write VI and VII (the subtonic), so drop the flat when the root is the natural-minor degree.
    if in_key.mode == "minor" and prefix == "b" and numeral.upper() in ("VI", "VII"):
        natural = in_key.getScale("minor").pitchFromDegree(6 if numeral.upper() == "VI" else 7)
        if rn.root().name == natural.name:
            prefix = ""
    if rn.isTriad():
        inversions, quality = _TRIAD_INVERSIONS, "o" if rn.isDiminishedTriad() else "+" if rn.isAugmentedTriad() else ""
    elif rn.isSeventh():
        inversions = _SEVENTH_INVERSIONS
        quality = "o" if rn.isDiminishedSeventh() else "ø" if rn.isHalfDiminishedSeventh() else ""
    else:
        return rn.figure
    inversion = rn.inversion()
    if inversion not in inversions:
        return rn.figure
    return f"{prefix}{numeral}{quality}{inversions[inversion]}"


@dataclass(frozen=True)
class Sonority:
    """One vertical slice of the score: every pitch sounding from `offset` until the next change."""

    offset: float
    measure: int | None
    beat: float
    pitches: tuple[str, ...]
    bass: str
    figure: str
    degree: int
    root: str
    quality: str
    inversion: int
    top: str
    name: str


def sonorities(music: stream.Score, in_key: key.Key) -> list[Sonority]:
    """The score's chords (all parts sounded together) with their Roman numerals in `in_key`."""
    slices: list[Sonority] = []
    for ch in music.chordify().flatten().getElementsByClass(chord.Chord):
        if not ch.pitches:
            continue
        rn = roman.romanNumeralFromChord(ch, in_key)
        ordered = sorted(ch.pitches, key=lambda p: p.ps)
        slices.append(
            Sonority(
                offset=float(ch.offset),
                measure=ch.measureNumber,
                beat=_round(float(ch.beat)) or 1.0,
                pitches=tuple(p.nameWithOctave for p in ordered),
                bass=ordered[0].nameWithOctave,
                figure=roman_figure(rn, in_key),
                degree=int(rn.scaleDegree),
                root=rn.root().name,
                quality=ch.quality,
                inversion=rn.inversion() if rn.isTriad() or rn.isSeventh() else 0,
                top=ordered[-1].nameWithOctave,
                name=ch.pitchedCommonName,
            )
        )
    return slices


def chord_analysis(music: stream.Score, *, limit: int = 500) -> dict[str, Any]:
    """Every chord of the score with measure, beat, pitches, common name and Roman numeral in the score's key."""
    in_key = score_key(music)
    chords = sonorities(music, in_key)
    return {
        "key": f"{in_key.tonic.name} {in_key.mode}",
        "chord_count": len(chords),
        "chords": [
            {
                "measure": s.measure,
                "beat": s.beat,
                "pitches": list(s.pitches),
                "name": s.name,
                "roman_numeral": s.figure,
            }
            for s in chords[:limit]
        ],
        "truncated": len(chords) > limit,
    }


# --- Harmony ----------------------------------------------------------------------------------------------------

# Harmonic function of a chord by the scale degree of its root.
_FUNCTIONS = {1: "tonic", 3: "tonic", 6: "tonic", 2: "predominant", 4: "predominant", 5: "dominant", 7: "dominant"}


def harmony_analysis(music: stream.Score, *, analysis_type: str = "roman") -> dict[str, Any]:
    """The harmony as a Roman-numeral progression ('roman'), as tonic/predominant/dominant functions
    ('functional'), or as the cadences at the phrase endings ('cadences')."""
    in_key = score_key(music)
    chords = sonorities(music, in_key)
    base = {"key": f"{in_key.tonic.name} {in_key.mode}", "analysis_type": analysis_type}
    if analysis_type == "roman":
        progression = _merge_repeats(chords)
        return {
            **base,
            "progression": [{"measure": s.measure, "beat": s.beat, "roman_numeral": s.figure} for s in progression],
            "figures": " ".join(s.figure for s in progression),
        }
    if analysis_type == "functional":
        progression = _merge_repeats(chords)
        functions = [_FUNCTIONS.get(s.degree, "other") for s in progression]
        counts = {name: functions.count(name) for name in ("tonic", "predominant", "dominant", "other")}
        return {
            **base,
            "functions": [
                {"measure": s.measure, "beat": s.beat, "roman_numeral": s.figure, "function": function}
                for s, function in zip(progression, functions, strict=True)
            ],
            "counts": counts,
            "summary": " ".join({"tonic": "T", "predominant": "PD", "dominant": "D"}.get(f, "?") for f in functions),
        }
    if analysis_type == "cadences":
        cadences = _cadences(music, chords, in_key)
        return {**base, "cadences": cadences, "count": len(cadences)}
    raise AnalysisError(f"Unknown analysis_type {analysis_type!r}; use roman, functional or cadences.")


def _merge_repeats(chords: list[Sonority]) -> list[Sonority]:
    merged: list[Sonority] = []
    for s in chords:
        if not merged or merged[-1].figure != s.figure:
            merged.append(s)
    return merged


def phrase_end_offsets(music: stream.Score) -> list[float]:
    """Where phrases end: fermatas in the top part (chorales mark them so), else notes followed by a rest; the
    last note always ends one."""
    top = music.parts[0] if music.parts else music
    notes = list(top.flatten().notesAndRests)
    ends: list[float] = []
    for element in notes:
        if not element.isRest and any(e.name == "fermata" for e in element.expressions):
            ends.append(float(element.offset))
    if not ends:
        for position, element in enumerate(notes[:-1]):
            if not element.isRest and notes[position + 1].isRest:
                ends.append(float(element.offset))
    sounding = [n for n in notes if not n.isRest]
    if sounding:
        last = float(sounding[-1].offset)
        if last not in ends:
            ends.append(last)
    return sorted(ends)


def _cadences(music: stream.Score, chords: list[Sonority], in_key: key.Key) -> list[dict[str, Any]]:
    by_offset = {s.offset: s for s in chords}
    found: list[dict[str, Any]] = []
    for end in phrase_end_offsets(music):
        # The chord sounding at the phrase end, and the last one before it on another root: passing notes
        # re-slice a chord, but the cadence is the change of harmony.
        final = by_offset.get(end) or next((s for s in reversed(chords) if s.offset <= end), None)
        if final is None:
            continue
        before = [s for s in chords if s.offset < final.offset and s.root != final.root]
        if not before:
            continue
        penultimate = before[-1]
        kind = _cadence_kind(penultimate, final, in_key)
        found.append(
            {
                "measure": final.measure,
                "beat": final.beat,
                "progression": f"{penultimate.figure} → {final.figure}",
                "type": kind,
            }
        )
    return found


def _cadence_kind(penultimate: Sonority, final: Sonority, in_key: key.Key) -> str:
    tonic = in_key.tonic.name
    root_motion = interval.Interval(noteStart=_pitch(penultimate.root), noteEnd=_pitch(final.root)).semitones % 12
    dominant_like = penultimate.degree in (5, 7) or (root_motion == 5 and penultimate.quality in ("major", "other"))
    if final.degree == 1:
        if penultimate.degree in (5, 7):
            perfect = (
                penultimate.degree == 5
                and penultimate.inversion == 0
                and final.inversion == 0
                and _pitch(final.top).name == tonic
            )
            return "perfect authentic" if perfect else "imperfect authentic"
        if penultimate.degree == 4:
            return "plagal"
    if final.degree == 5 and final.quality == "major":
        if in_key.mode == "minor" and penultimate.degree == 4 and penultimate.inversion == 1:
            return "phrygian half"
        return "half"
    if penultimate.degree == 5 and final.degree == 6:
        return "deceptive"
    if dominant_like and root_motion == 5:
        # V-I in another key: the phrase cadences in a closely related key (a tonicisation).
        return f"authentic in the key of {final.figure.rstrip('0123456789')}"
    return "other"


def _pitch(name: str) -> pitch.Pitch:
    return pitch.Pitch(name)
