"""Composition: transposition, four-part harmonisation, style imitation. Pure functions from streams to new streams.

The input stream comes from the shared parsed-score cache: nothing here changes it. New music is built from deep
copies or from scratch. Species counterpoint lives in `counterpoint.py`, four-part harmonisation in `harmonisation.py`.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from typing import Any

from music21 import interval as m21interval
from music21 import key, meter, note, pitch, stream

from apps.core.errors import AnalysisError, InvalidArguments
from apps.tools.services.counterpoint import generate_counterpoint
from apps.tools.services.derived import sounding
from apps.tools.services.harmonisation import harmonize_melody, melody_part_select
from apps.tools.services.keys import score_key
from apps.tools.services.spelling import key_name
from apps.tools.services.summary import key_signature_name, key_signatures

__all__ = ["generate_counterpoint", "harmonize_melody", "imitate_style", "transpose"]

# --- Transposition ----------------------------------------------------------------------------------------------


def _key_signature_name(music: stream.Score) -> str:
    """The opening key signature at concert pitch (a Bb clarinet's written one flat is three), or 'none'."""
    signatures = key_signatures(music)
    return key_signature_name(signatures[0]) if signatures else "none"


def transpose(music: stream.Score, *, interval: str) -> tuple[stream.Score, dict[str, Any]]:
    """The score transposed by `interval` ('P5', 'M2', '-m3'), key signatures included; by the enharmonic interval
    of the same size instead when `interval` would write a key signature of more than seven sharps or flats."""
    name = interval.strip()
    try:
        step = _interval(name)
    except Exception:
        raise InvalidArguments(
            f"{name!r} is not an interval; use a quality and a size such as 'P5', 'M2', 'm3', 'A4', "
            "with '-' for downwards ('-m3')."
        ) from None
    if abs(step.semitones) > 48:
        raise InvalidArguments(f"{name!r} is more than four octaves; transpose by at most 'P29'.")
    signatures = key_signatures(music)
    asked, step = step, _readable(step, signatures[0] if signatures else 0)
    result = music.transpose(step)
    warnings = []
    if step is not asked:
        warnings.append(
            f"{asked.directedName} would write a key signature of "
            f"{key_signature_name(key.KeySignature(signatures[0] if signatures else 0).transpose(asked).sharps)}: "
            f"transposed by the same number of semitones spelled as {step.directedName} instead."
        )
    info = {
        "interval": step.directedName,
        "semitones": step.semitones,
        "direction": "up" if step.semitones > 0 else "down" if step.semitones < 0 else "none",
        "key_signature_before": _key_signature_name(music),
        "key_signature_after": _key_signature_name(result),
        "warnings": warnings,
    }
    return result, info


# A key signature has at most seven sharps or flats. F# minor up an augmented fourth is B# minor, nine sharps and a
# double sharp on every other note, which no musician reads: it is written as C minor, up a diminished fifth.
MOST_ACCIDENTALS = 7


def _readable(step: m21interval.Interval, sharps: int) -> m21interval.Interval:
    """`step`, or the interval of as many semitones one letter either side of it (d5 for A4) when `step` would take
    the key signature of `sharps` past seven sharps or flats, whichever leaves the fewest."""
    if abs(key.KeySignature(sharps).transpose(step).sharps) <= MOST_ACCIDENTALS:
        return step
    generic = step.generic.directed
    found = []
    for other in {generic - 1, generic + 1, -generic - 1, -generic + 1} - {0, generic}:
        try:
            respelled = m21interval.intervalFromGenericAndChromatic(other, step.semitones)
        except Exception:  # noqa: S112 - no interval of this size spans so many semitones
            continue
        after = abs(key.KeySignature(sharps).transpose(respelled).sharps)
        if respelled.semitones == step.semitones and after <= MOST_ACCIDENTALS:
            found.append((after, abs(other - generic), respelled))
    return min(found, key=lambda option: option[:2])[2] if found else step


def _interval(name: str) -> m21interval.Interval:
    # One '-' at most, before the name or music21's own before the size ('-m3', 'm-3'): music21 reads any number,
    # anywhere, as down ('-P-5', 'P5-'), so that a sign given twice was not the direction asked.
    if not name or len(name) > 6 or not re.fullmatch(r"-?[A-Za-z]+-?\d+", name) or name.count("-") > 1:
        raise ValueError(name)
    return m21interval.Interval(name)


# --- Harmonisation: `harmonisation.py` -----------------------------------------------------------------------


def _top(element: Any) -> pitch.Pitch:
    return max(element.pitches, key=lambda p: p.ps)


# --- Style imitation --------------------------------------------------------------------------------------------

# The notes outside a key's scale, as intervals above its tonic, spelled as music in the key spells them: in major
# the raised tonic, fourth and fifth, the lowered third and seventh; in minor the leading tone and the raised sixth
# (E# and D# in F# minor, never F or Eb), the major third and the raised fourth, and the Neapolitan's lowered second.
CHROMATIC = {"major": ("A1", "m3", "A4", "A5", "m7"), "minor": ("m2", "M3", "A4", "M6", "M7")}


def _learn(
    sources: list[stream.Score],
) -> tuple[dict[Any, Counter[Any]], Counter[float], key.Key, meter.TimeSignature, list[int]]:
    """Second-order transitions of (scale step from the tonic, duration) over every source's melody part, each
    source read as it sounds, its steps counted from the tonic of the whole score's key: a tune alone can say
    another key than its harmony does (bwv103.6's soprano alone reads as A major; the chorale is in B minor).
    The key and the meter are the sources' most common, counted in notes and in measures."""
    transitions: dict[Any, Counter[Any]] = defaultdict(Counter)
    durations: Counter[float] = Counter()
    keys: Counter[tuple[str, str]] = Counter()
    meters: Counter[str] = Counter()
    heights: list[int] = []
    for source in map(sounding, sources):
        # The tune, not whatever part comes first (a horn or a trumpet in many chorales), chosen as harmonisation does.
        try:
            _, melody = melody_part_select(source, None)
        except AnalysisError:
            continue  # a source without notes teaches nothing
        notes = list(melody.stripTies().flatten().notes)
        if len(notes) < 3:
            continue
        found = score_key(source)
        keys[(found.tonic.name, found.mode)] += len(notes)
        for measure in melody.getElementsByClass(stream.Measure):
            signature = measure.timeSignature or measure.getContextByClass(meter.TimeSignature)
            if signature is not None:
                meters[signature.ratioString] += 1
        tonic = found.tonic.midi % 12
        states = []
        for n in notes:
            top = _top(n)
            heights.append(top.midi - tonic)
            step = top.midi - tonic - 60  # semitones from the tonic near middle C
            # Tuplets and odd values would leave measures a hair short or long: keep to halves of a beat.
            duration = max(0.5, round(float(n.quarterLength) * 2) / 2)
            durations[duration] += 1
            states.append((step, duration))
        for a, b, c in zip(states, states[1:], states[2:], strict=False):
            transitions[(a, b)][c] += 1
            transitions[(b,)][c] += 1
    if not keys:
        raise AnalysisError("The sources have no melody to learn from (their melody parts have fewer than 3 notes).")
    (tonic_name, mode), _ = keys.most_common(1)[0]
    # Sources without bars (a MIDI-like stream) say nothing of their meter: common time.
    ratio = meters.most_common(1)[0][0] if meters else "4/4"
    return transitions, durations, key.Key(tonic_name, mode), meter.TimeSignature(ratio), heights


def imitate_style(
    sources: list[stream.Score], *, length: int = 8, seed: int = 0
) -> tuple[stream.Score, dict[str, Any]]:
    """A new melody of `length` measures from a second-order Markov model of the sources' melody parts, in their
    most common key (each source's melody is learnt relative to its own tonic) and meter, ending on the tonic."""
    transitions, durations, in_key, time_signature, heights = _learn(sources)
    rng = random.Random(seed)  # noqa: S311 - reproducible music, not secrets
    tonic = in_key.tonic.midi % 12 + 60
    low, high = min(heights) - 60, max(heights) - 60  # the learnt range, in semitones from the tonic
    bar = float(time_signature.barDuration.quarterLength)
    total = bar * length
    starts = [state for state in transitions if len(state) == 2]
    history = list(rng.choice(sorted(starts, key=repr)))
    melody: list[tuple[int, float]] = []
    elapsed = 0.0
    while elapsed < total - 1e-9:
        options = transitions.get(tuple(history[-2:])) or transitions.get((history[-1],)) or Counter({(0, 1.0): 1})
        ordered = sorted(options.items(), key=repr)
        step, duration = rng.choices([o for o, _ in ordered], weights=[w for _, w in ordered])[0]
        step = max(low, min(high, step))
        room = bar - (elapsed % bar)
        duration = min(duration, room)  # never across the bar line: every measure is exactly full
        melody.append((step, duration))
        history.append((step, duration))
        elapsed += duration
    # End on the tonic: the last note takes the tonic in the octave nearest the note before it.
    last_step, last_duration = melody[-1]
    melody[-1] = (round(last_step / 12) * 12, last_duration)

    part = stream.Part(id="Melody")
    part.partName = "Melody"
    part.append(time_signature)
    part.append(in_key)
    names = {p.pitchClass: p.name for p in in_key.getScale().getPitches()}
    for chromatic in CHROMATIC[in_key.mode]:
        names.setdefault(in_key.tonic.transpose(chromatic).pitchClass, in_key.tonic.transpose(chromatic).name)
    for step, duration in melody:
        part.append(note.Note(_spelled(tonic + step, names), quarterLength=duration))
    result = stream.Score()
    result.insert(0, part.makeMeasures())
    info = {
        "key": key_name(in_key),
        "time_signature": time_signature.ratioString,
        "measures": length,
        "seed": seed,
        "sources": len(sources),
        "notes": len(melody),
        "durations_learnt": sorted(durations),
    }
    return result, info


def _spelled(midi: int, names: dict[int, str]) -> pitch.Pitch:
    """The pitch `midi` spelled as the key spells it (Bb rather than A# in F major, E# rather than F in F# minor)."""
    plain = pitch.Pitch(midi=midi)
    spelled = pitch.Pitch(names[plain.pitchClass])
    spelled.octave = plain.octave
    while spelled.midi < midi:
        spelled.octave += 1
    while spelled.midi > midi:
        spelled.octave -= 1
    return spelled
