"""Chords and harmony of a whole score. Pure functions from a music21 stream to a dict.

The stream comes from the shared parsed-score cache, so nothing here may change it: music21 calls that would
(`chordify`, `stripTies`, `transpose`) make new streams, and nothing is inserted into the original. Each chord's
Roman numeral is written in one textbook style (apps.tools.services.figures); cadences are read by
apps.tools.services.cadences."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from music21 import chord, pitch, stream

from apps.core.errors import AnalysisError
from apps.tools.services.cadences import cadences, melody_part, parts_of
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


def _decorates(now: tuple[pitch.Pitch, ...], before: tuple[pitch.Pitch, ...], after: tuple[pitch.Pitch, ...]) -> bool:
    """Whether each note of `now` that `before` did not have came by step from a note of `before` and leaves by
    step (a passing or neighbour note), or is a single note kept into `after` (an anticipation)."""
    names_before = {p.nameWithOctave for p in before}
    names_after = {p.nameWithOctave for p in after}
    new = [p for p in now if p.nameWithOctave not in names_before]
    if not new:
        return True
    for p in new:
        approached = any(_steps_apart(q, p) for q in before)
        left = p.nameWithOctave not in names_after and any(_steps_apart(p, q) for q in after)
        anticipated = len(new) == 1 and p.nameWithOctave in names_after
        if not (approached and (left or anticipated)):
            return False
    return True


def _resolves_into(now: Chord, after: Chord, dissonant: bool) -> bool:
    """A suspension or appoggiatura: `now` is no stack of thirds (`dissonant`), or a seventh chord or second
    inversion before a consonant triad; it has the bass of `after`, and each of its notes that `after` lacks moves
    to `after` by step (a 4-3 or 9-8 over the same bass, a 6-5 onto a triad)."""
    if not (dissonant or (after.is_triad and not now.is_triad)):
        return False
    names_after = {p.name for p in after.pitches}
    return now.bass.name == after.bass.name and all(
        any(_steps_apart(p, q) for q in after.pitches) for p in now.pitches if p.name not in names_after
    )


Slice = tuple[tuple[pitch.Pitch, ...], float, float, "int | None", float]


def _slices(chordified: stream.Score) -> list[Slice]:
    """Each sounding slice as (pitches low to high, offset, quarter_length, measure, beat).

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
                float(ch.beat),
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
            beat = float(meter.getBeatProportion(position)) if meter else position + 1
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


def chords(music: stream.Score) -> list[Chord]:
    """The score's harmonies (all parts sounded together), one per change of harmony.

    `chordify` slices at every onset in any part; a slice whose new notes arrive and leave by step (passing and
    neighbour notes, anticipations) belongs to the chord before it, and a slice that is no chord but resolves by
    step over the same bass (a suspension, an appoggiatura) belongs to the chord after it."""
    slices = _slices(music.chordify())
    raw = [chord_of(*slice_) for slice_ in slices]
    harmonies: list[Chord] = []
    index = 0
    while index < len(raw):
        current = raw[index]
        following = raw[index + 1] if index + 1 < len(raw) else None
        dissonant = tertian_root(slices[index][0]) is None
        if following is not None and _resolves_into(current, following, dissonant):
            # The chord is the resolution, from the dissonance's onset.
            current = replace(following, offset=current.offset, measure=current.measure, beat=current.beat)
            index += 1
        harmonies.append(current)
        index += 1
        while index < len(raw):
            now, _, _, _, beat = slices[index]
            after = slices[index + 1][0] if index + 1 < len(slices) else ()
            off_beat = beat % 1 != 0
            if not (off_beat and _decorates(now, harmonies[-1].pitches, after)):
                break
            harmony = harmonies[-1]
            added = raw[index]
            if added.root.name == harmony.root.name and harmony.seventh is None and added.seventh is not None:
                # A passing seventh over the same root (V - V7) makes the chord a seventh chord.
                pitches = tuple(sorted({*harmony.pitches, *added.pitches}, key=lambda p: p.ps))
                harmony = replace(harmony, pitches=pitches, seventh=added.seventh)
            harmonies[-1] = replace(harmony, quarter_length=added.offset + added.quarter_length - harmony.offset)
            index += 1
    return harmonies


def _labelled(harmonies: list[Chord], in_key: Tonality) -> list[str]:
    return [
        roman_figure(c, in_key, harmonies[position + 1] if position + 1 < len(harmonies) else None)
        for position, c in enumerate(harmonies)
    ]


def chord_analysis(music: stream.Score, *, limit: int = 500) -> dict[str, Any]:
    """Every harmony of the score with measure, beat, length, pitches, common name and Roman numeral in the
    score's key."""
    in_key = Tonality.of(score_key(music))
    harmonies = chords(music)
    figures = _labelled(harmonies, in_key)
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
                "name": f"{pitch_name(c.root)} {chord.Chord(c.pitches).commonName}",
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
    ('functional'), or as the cadences at the phrase endings ('cadences')."""
    if analysis_type not in ("roman", "functional", "cadences"):
        raise AnalysisError(f"Unknown analysis_type {analysis_type!r}; use roman, functional or cadences.")
    in_key = Tonality.of(score_key(music))
    harmonies = chords(music)
    base = {"key": in_key.name, "analysis_type": analysis_type}
    if analysis_type == "cadences":
        found = cadences(music, harmonies, in_key)
        melody = melody_part(music)
        parts = parts_of(music)
        index = next((i for i, part in enumerate(parts) if part is melody), 0)
        return {
            **base,
            "melody": {"part": index, "part_label": part_label(melody, index)},
            "cadences": found,
            "count": len(found),
        }
    progression = _merge_repeats(harmonies, _labelled(harmonies, in_key))
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


def _merge_repeats(harmonies: list[Chord], figures: list[str]) -> list[tuple[Chord, str]]:
    merged: list[tuple[Chord, str]] = []
    for c, figure in zip(harmonies, figures, strict=True):
        if not merged or merged[-1][1] != figure:
            merged.append((c, figure))
    return merged
