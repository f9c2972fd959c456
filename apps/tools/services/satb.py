"""The four-part (SATB) rules and the checker that counts their breaks in any score, with music21.

Parallel and contrary fifths and octaves are music21's `VoiceLeadingQuartet` verdicts, so a generator's own
arithmetic is never its own judge.
"""

from __future__ import annotations

import itertools
from fractions import Fraction
from typing import Any

from music21 import chord as m21chord
from music21 import key, note, pitch, stream, voiceLeading

from apps.tools.services.spelling import pitch_name

VOICES = ("soprano", "alto", "tenor", "bass")
# Textbook SATB ranges as MIDI numbers: S C4-G5, A G3-D5, T C3-G4, B E2-C4.
RANGES = {"soprano": (60, 79), "alto": (55, 74), "tenor": (48, 67), "bass": (40, 60)}
# Widest interval between adjacent voices, in semitones: an octave for S-A and A-T, a twelfth for T-B.
SPACING = {("soprano", "alto"): 12, ("alto", "tenor"): 12, ("tenor", "bass"): 19}
CHECKS = (
    "parallel_fifths",
    "parallel_octaves",
    "voice_crossings",
    "out_of_range",
    "spacing",
    "incomplete_final_chord",
)


def voice_leading_violations(
    music: stream.Score, *, voices: tuple[str, ...] = VOICES, in_key: key.Key | None = None
) -> list[dict[str, Any]]:
    """Every break of the four-part rules in `music`, whose parts are `voices` from the top down.

    Counted between every pair of voices, at each change of sound: parallel (and contrary) fifths and octaves
    (unisons included) with music21's `VoiceLeadingQuartet`; voice crossings; notes outside the voice's textbook
    range; spacing wider than an octave between soprano and alto or alto and tenor, or a twelfth between tenor and
    bass; and a final tonic chord (of `in_key`, else of the last chord's own root) without its root and third, or
    with neither its fifth nor a doubled root (nor, for a seventh chord, its seventh). Each violation is
    `{"rule", "bar", "voices", "detail"}`, `bar` the printed measure number.
    """
    parts = list(music.parts) or [music]
    names = list(voices[: len(parts)])
    timelines = [_timeline(part) for part in parts]
    onsets = sorted({start for timeline in timelines for start, _, _ in timeline})
    slices = [[_sounding(timeline, onset) for timeline in timelines] for onset in onsets]
    found: list[dict[str, Any]] = []
    for column in slices:
        found.extend(_vertical_violations(column, names))
    for before, after in itertools.pairwise(slices):
        found.extend(_motion_violations(before, after, names))
    final = next((column for column in reversed(slices) if any(n is not None for n in column)), None)
    if final is not None:
        found.extend(_final_chord_violations(final, in_key))
    return found


def violation_counts(violations: list[dict[str, Any]]) -> dict[str, int]:
    """How many violations of each rule, every rule named (zero when kept)."""
    counts = dict.fromkeys(CHECKS, 0)
    for violation in violations:
        counts[violation["rule"]] += 1
    return counts


def _timeline(part: stream.Stream) -> list[tuple[Fraction, Fraction, note.NotRest | None]]:
    # Offsets as exact fractions: tuplet offsets compared as floats would misalign voices.
    events = []
    for element in part.recurse().notesAndRests:
        start = Fraction(element.getOffsetInHierarchy(part)).limit_denominator(10000)
        end = start + Fraction(element.quarterLength).limit_denominator(10000)
        events.append((start, end, element if element.pitches else None))  # a rest, or unpitched percussion
    return events


def _sounding(timeline: list[tuple[Fraction, Fraction, Any]], onset: Fraction) -> Any:
    for start, end, element in timeline:
        if start <= onset < end:
            return element
    return None


def top_pitch(element: Any) -> pitch.Pitch:
    """The highest pitch of a note or chord: a voice's pitch."""
    return max(element.pitches, key=lambda p: p.ps)


def _bar(element: Any) -> int | None:
    return element.measureNumber


def _vertical_violations(column: list[Any], names: list[str]) -> list[dict[str, Any]]:
    found = []
    sounding = [(name, element) for name, element in zip(names, column, strict=True) if element is not None]
    for name, element in sounding:
        top = top_pitch(element)
        starts = element.tie is None or element.tie.type == "start"
        low, high = RANGES.get(name, (0, 127))
        if starts and not low <= top.midi <= high:
            found.append(_violation("out_of_range", element, [name], f"{pitch_name(top, octave=True)}"))
    for (upper, above), (lower, below) in itertools.combinations(sounding, 2):
        high_pitch, low_pitch = top_pitch(above), top_pitch(below)
        if high_pitch.ps < low_pitch.ps:
            detail = f"{pitch_name(high_pitch, octave=True)} below {pitch_name(low_pitch, octave=True)}"
            found.append(_violation("voice_crossings", above, [upper, lower], detail))
        widest = SPACING.get((upper, lower))
        if widest is not None and high_pitch.ps - low_pitch.ps > widest:
            detail = f"{pitch_name(high_pitch, octave=True)} over {pitch_name(low_pitch, octave=True)}"
            found.append(_violation("spacing", above, [upper, lower], detail))
    return found


def _motion_violations(before: list[Any], after: list[Any], names: list[str]) -> list[dict[str, Any]]:
    found = []
    for i, j in itertools.combinations(range(len(names)), 2):
        a0, a1, b0, b1 = before[i], after[i], before[j], after[j]
        if a0 is None or a1 is None or b0 is None or b1 is None or (a0 is a1 and b0 is b1):
            continue
        p0, p1, q0, q1 = (top_pitch(e) for e in (a0, a1, b0, b1))
        # Only perfect intervals can make consecutive fifths or octaves: skip music21 for the rest (it is slow).
        if round(p0.ps - q0.ps) % 12 not in (0, 7) or round(p1.ps - q1.ps) % 12 not in (0, 7):
            continue
        quartet = voiceLeading.VoiceLeadingQuartet(p0, p1, q0, q1)
        detail = (
            f"{pitch_name(p0, octave=True)}-{pitch_name(q0, octave=True)} to "
            f"{pitch_name(p1, octave=True)}-{pitch_name(q1, octave=True)}"
        )
        if quartet.parallelFifth():
            found.append(_violation("parallel_fifths", a1, [names[i], names[j]], detail))
        elif quartet.parallelUnisonOrOctave():
            found.append(_violation("parallel_octaves", a1, [names[i], names[j]], detail))
    return found


def _final_chord_violations(column: list[Any], in_key: key.Key | None) -> list[dict[str, Any]]:
    pitches = [top_pitch(element) for element in column if element is not None]
    sounding = m21chord.Chord(pitches)
    root = in_key.tonic if in_key is not None else sounding.root()
    classes = [p.pitchClass for p in pitches]
    has_third = any((pc - root.pitchClass) % 12 in (3, 4) for pc in classes)
    has_fifth = any((pc - root.pitchClass) % 12 == 7 for pc in classes)
    has_seventh = any((pc - root.pitchClass) % 12 in (10, 11) for pc in classes)
    roots = classes.count(root.pitchClass)
    if roots and has_third and (has_fifth or has_seventh or roots >= 2):
        return []
    names = ", ".join(pitch_name(p, octave=True) for p in pitches)
    element = next(e for e in column if e is not None)
    detail = f"final chord {names} is not a complete {pitch_name(root)} chord (root, third, and fifth or doubled root)"
    return [_violation("incomplete_final_chord", element, [], detail)]


def _violation(rule: str, element: Any, voices: list[str], detail: str) -> dict[str, Any]:
    return {"rule": rule, "bar": _bar(element), "voices": voices, "detail": detail}
