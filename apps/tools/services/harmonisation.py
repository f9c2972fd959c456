"""Four-part (SATB) harmonisation of a melody, keeping the textbook rules that `satb.py` checks.

The generator chooses chords and voicings together: a dynamic programme over every candidate voicing of every
vocabulary chord under each melody note, where consecutive fifths and octaves between any two voices are forbidden
and the cost is root motion, voice-leading smoothness, doubling and inversion preferences. The result's `checks`
come from the checker in `satb.py`, which reads the written score with music21, not from the generator's arithmetic.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from music21 import clef, key, note, pitch, roman, stream

from apps.core.errors import AnalysisError, InvalidArguments
from apps.tools.services.derived import sounding, transposing_parts
from apps.tools.services.keys import score_key
from apps.tools.services.satb import RANGES, VOICES, top_pitch, violation_counts, voice_leading_violations
from apps.tools.services.spelling import key_name, pitch_name
from apps.tools.services.summary import part_label

CLEFS = {"soprano": clef.TrebleClef, "alto": clef.TrebleClef, "tenor": clef.Treble8vbClef, "bass": clef.BassClef}

VOCABULARY = {
    "chorale": {
        "major": ["I", "ii", "iii", "IV", "V", "vi", "viio", "V7"],
        "minor": ["i", "iio", "III", "iv", "V", "VI", "viio", "V7"],
    },
    "classical": {"major": ["I", "ii", "IV", "V", "vi", "V7"], "minor": ["i", "iio", "iv", "V", "VI", "V7"]},
    "jazz": {
        "major": ["Imaj7", "ii7", "iii7", "IVmaj7", "V7", "vi7", "viiø7"],
        "minor": ["i7", "iiø7", "IIImaj7", "iv7", "V7", "VImaj7", "viio7"],
    },
    "pop": {"major": ["I", "ii", "IV", "V", "vi"], "minor": ["i", "iv", "V", "VI", "VII", "III"]},
}
# Words in a part's label that mark it as the tune.
MELODY_LABEL = re.compile(r"\b(soprano|sopran|melody|melodie|voice|vocals?|cantus|canto|tune)\b", re.IGNORECASE)

# Cost of moving between chord roots, by the rise in scale degrees (mod 7): falling fifths are the strongest motion.
ROOT_MOTION = {3: 0.0, 1: 1.0, 5: 1.0, 4: 1.5, 0: 1.5, 2: 2.0, 6: 2.5}
FORBIDDEN = 1e6
# A chord holding the melody's letter with another accidental: always avoided where any other chord will do.
CLASH = 100.0
# The tonic chord's pitch classes above the tonic, by mode.
TONIC_TRIAD = {"major": (0, 4, 7), "minor": (0, 3, 7)}


# --- The generator ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Chord:
    figure: str
    degree: int
    pitch_classes: tuple[int, ...]  # root, third, fifth (, seventh)
    names: dict[int, str]  # pitch class -> spelled name in the key
    seventh: bool


def _chords(style: str, in_key: key.Key) -> list[_Chord]:
    chords = []
    for figure in VOCABULARY[style][in_key.mode if in_key.mode in ("major", "minor") else "major"]:
        rn = roman.RomanNumeral(figure, in_key)
        ordered = [rn.root(), rn.third, rn.fifth, *([rn.seventh] if rn.isSeventh() else [])]
        chords.append(
            _Chord(
                figure=figure,
                degree=int(rn.scaleDegree),
                pitch_classes=tuple(p.pitchClass for p in ordered),
                names={p.pitchClass: p.name for p in ordered},
                seventh=rn.isSeventh(),
            )
        )
    return chords


@cache
def _octaves(name: str) -> tuple[tuple[int, pitch.Pitch], ...]:
    """`name` (music21 spelling) in every octave a voice might sing, with its MIDI number."""
    found = []
    for octave in range(0, 9):
        p = pitch.Pitch(f"{name}{octave}")
        found.append((p.midi, p))
    return tuple(found)


@cache
def _between(name: str, low: int, high: int) -> list[tuple[int, pitch.Pitch]]:
    return [(midi, p) for midi, p in _octaves(name) if low <= midi <= high]


@dataclass
class _Position:
    """The candidate voicings under one melody note: parallel arrays, one row per candidate."""

    midi: np.ndarray  # (n, 4) soprano, alto, tenor, bass
    chord: np.ndarray  # (n,) index into the vocabulary
    cost: np.ndarray  # (n,)
    leading: np.ndarray  # (n, 4) the voice holds the key's leading tone
    sevenths: np.ndarray  # (n, 4) the voice holds the chord's seventh
    pitches: list[tuple[pitch.Pitch, ...]]
    figures: list[str]
    tier: int  # 0 textbook ranges, 1 widened, 2 only the order of the voices


def _candidates(
    soprano: pitch.Pitch,
    chords: list[_Chord],
    *,
    place: str,
    leading_tone: int,
    shift: int,
) -> _Position:
    """Every acceptable voicing of every chord under `soprano`, widening the ranges only if none fits."""
    for tier in (0, 1, 2):
        rows: list[tuple[tuple[int, ...], int, float, tuple[pitch.Pitch, ...], str]] = []
        for index, harmony in enumerate(chords):
            for midi, pitches, cost, figure in _voicings(soprano, harmony, place=place, tier=tier, shift=shift):
                cost += _chord_cost(soprano, harmony, index, chords, place)
                if sum(1 for m in midi if m % 12 == leading_tone) > 1:
                    continue  # a doubled leading tone
                rows.append((midi, index, cost, pitches, figure))
        if rows:
            midi_rows = np.array([r[0] for r in rows], dtype=np.int64)
            sevenths = np.array(
                [[chords[r[1]].seventh and m % 12 == chords[r[1]].pitch_classes[3] for m in r[0]] for r in rows]
            )
            return _Position(
                midi=midi_rows,
                chord=np.array([r[1] for r in rows]),
                cost=np.array([r[2] for r in rows]),
                leading=midi_rows % 12 == leading_tone,
                sevenths=sevenths,
                pitches=[r[3] for r in rows],
                figures=[r[4] for r in rows],
                tier=tier,
            )
    raise AnalysisError(f"No chord of the vocabulary can be voiced under {pitch_name(soprano, octave=True)}.")


def _chord_cost(soprano: pitch.Pitch, harmony: _Chord, index: int, chords: list[_Chord], place: str) -> float:
    melody_pc = soprano.pitchClass
    cost = 0.0 if melody_pc in harmony.pitch_classes else 6.0  # a non-chord melody note
    if any(name[0] == soprano.step and pc != melody_pc for pc, name in harmony.names.items()):
        cost += CLASH  # the melody's F# over a chord's F: the same note at once raised and not
    tonic = index == 0
    if place == "first" and not tonic:
        cost += 2.0
    if place == "last" and not tonic:
        cost += 12.0
    if place == "penultimate" and harmony.degree not in (5, 7):
        cost += 2.5
    return cost


def _voicings(
    soprano: pitch.Pitch, harmony: _Chord, *, place: str, tier: int, shift: int
) -> list[tuple[tuple[int, ...], tuple[pitch.Pitch, ...], float, str]]:
    """Alto, tenor and bass for `harmony` under `soprano`: no crossing, every chord with its root and third (and
    seventh), the final chord in root position; within the ranges and spacing at tier 0, ranges widened by a
    fourth at tier 1, only the order of the voices at tier 2."""
    s = soprano.midi
    widen = (0, 5, 48)[tier]
    ranges = {v: (low + shift - widen, high + shift + widen) for v, (low, high) in RANGES.items()}
    spread = (12, 12, 19) if tier < 2 else (127, 127, 127)
    pcs = harmony.pitch_classes
    melody_pc = soprano.pitchClass
    melody = melody_pc if melody_pc in pcs else None
    inversions = [0] if place == "last" or harmony.seventh else [0, 1]
    found = []
    for inversion in inversions:
        bass_pc = pcs[inversion]
        cost = _inversion_cost(harmony, inversion, place)
        for b, bass in _octaves(harmony.names[bass_pc]):
            if not ranges["bass"][0] <= b <= ranges["bass"][1] or b >= s:
                continue
            for alto_pc, tenor_pc in itertools.product(pcs, repeat=2):
                voiced = [melody, alto_pc, tenor_pc, bass_pc]
                if not _complete(voiced, harmony):
                    continue
                doubling = _doubling_cost(voiced, harmony)
                altos = _between(
                    harmony.names[alto_pc], max(ranges["alto"][0], s - spread[0]), min(ranges["alto"][1], s)
                )
                for a, alto in altos:
                    low = max(ranges["tenor"][0], b, a - spread[1])
                    for t, tenor in _between(harmony.names[tenor_pc], low, min(ranges["tenor"][1], a)):
                        if t - b > spread[2]:
                            continue
                        unisons = (s == a) + (a == t) + (t == b)
                        if unisons > 1:
                            continue  # never collapse the voices onto one pitch
                        figure = harmony.figure + ("6" if inversion else "")
                        found.append(
                            ((s, a, t, b), (soprano, alto, tenor, bass), cost + doubling + 2.0 * unisons, figure)
                        )
    return found


def _inversion_cost(harmony: _Chord, inversion: int, place: str) -> float:
    diminished = harmony.figure.startswith(("vii", "iio")) and not harmony.seventh
    if diminished:
        return 0.0 if inversion == 1 else 3.0  # viio6, iio6: the diminished fifth away from the bass
    if inversion == 0:
        return 0.0
    return 3.0 if place == "penultimate" else 1.2


def _complete(voiced: list[int | None], harmony: _Chord) -> bool:
    """Root and third always, the seventh of a seventh chord; no fifth only with a doubled root."""
    present = [pc for pc in voiced if pc is not None]
    root, third, fifth = harmony.pitch_classes[:3]
    if root not in present or third not in present:
        return False
    if harmony.seventh and harmony.pitch_classes[3] not in present:
        return False
    if harmony.seventh and present.count(harmony.pitch_classes[3]) > 1:
        return False  # a doubled seventh
    # A seventh chord may leave out its fifth (root, third and seventh make it); a triad only with a doubled root.
    return harmony.seventh or fifth in present or present.count(root) >= 2


def _doubling_cost(voiced: list[int | None], harmony: _Chord) -> float:
    third, fifth = harmony.pitch_classes[1:3]
    present = [pc for pc in voiced if pc is not None]
    cost = 0.0 if fifth in present else 0.8
    if present.count(third) > 1:
        # The third of a diminished triad is its best doubling; of a major or minor triad, the worst.
        cost += 0.0 if harmony.figure.startswith(("vii", "iio")) else 1.5
    if present.count(fifth) > 1:
        cost += 0.6
    return cost


def _transition(previous: _Position, current: _Position, motion: np.ndarray) -> np.ndarray:
    """Cost of moving from each previous candidate (rows) to each current one (columns)."""
    before, after = previous.midi, current.midi
    cost = motion[previous.chord][:, current.chord].astype(float)
    # Across a rest too: a listener (and a checker reading chord to chord) still hears fifths over a short rest.
    step = after[None, :, :] - before[:, None, :]  # (p, n, 4)
    leap = np.abs(step)
    cost += 0.6 * (leap[..., 1] + leap[..., 2]) + 0.25 * leap[..., 3]
    cost += 3.0 * (leap[..., 1:3] > 7).sum(axis=-1) + 4.0 * (leap[..., 3] > 12)
    moving = step != 0
    for upper, lower in itertools.combinations(range(4), 2):
        was = (before[:, upper] - before[:, lower]) % 12
        now = (after[:, upper] - after[:, lower]) % 12
        perfect = ((was == 0) | (was == 7))[:, None] & (was[:, None] == now[None, :])
        # Consecutive fifths or octaves, in similar or contrary motion: never.
        cost[perfect & moving[..., upper] & moving[..., lower]] += FORBIDDEN
    # Hidden fifths and octaves between the outer voices: similar motion into a perfect interval, soprano leaping.
    outer = (after[:, 0] - after[:, 3]) % 12
    similar = step[..., 0] * step[..., 3] > 0
    cost[((outer == 0) | (outer == 7))[None, :] & similar & (leap[..., 0] > 2)] += 2.5
    # The leading tone rises to the tonic and a seventh falls by step (inner voices and bass; the melody is given).
    unresolved_leading = previous.leading[:, None, 1:] & (step[..., 1:] != 1)
    cost += (unresolved_leading * np.array([0.8, 0.8, 2.0])).sum(axis=-1)
    unresolved_seventh = previous.sevenths[:, None, 1:] & (step[..., 1:] != -1) & (step[..., 1:] != -2)
    cost += 2.0 * unresolved_seventh.sum(axis=-1)
    return cost


def _root_motion(chords: list[_Chord]) -> np.ndarray:
    matrix = np.zeros((len(chords), len(chords)))
    for i, a in enumerate(chords):
        for j, b in enumerate(chords):
            matrix[i, j] = ROOT_MOTION[(b.degree - a.degree) % 7]
            if a.degree in (5, 7) and b.degree in (2, 4):
                matrix[i, j] += 4.0  # dominant back to predominant: a retrogression
    return matrix


def _best_path(positions: list[_Position], motion: np.ndarray) -> list[int]:
    """The cheapest sequence of candidates, one per position (Viterbi)."""
    totals = positions[0].cost.copy()
    back: list[np.ndarray] = []
    for previous, current in itertools.pairwise(positions):
        through = totals[:, None] + _transition(previous, current, motion)
        choice = through.argmin(axis=0)
        back.append(choice)
        totals = through[choice, np.arange(len(choice))] + current.cost
    path = [int(totals.argmin())]
    for choice in reversed(back):
        path.append(int(choice[path[-1]]))
    return path[::-1]


# --- The service --------------------------------------------------------------------------------------------------


def melody_part_select(music: stream.Score, melody_part: int | str | None) -> tuple[int, stream.Stream]:
    """The part holding the tune: `melody_part` (0-based index, or label, or an index written as text) if given;
    else the first part whose label names a soprano, melody, voice or cantus; else the part with notes whose average
    pitch is highest."""
    parts = list(music.parts) or [music]
    labels = [part_label(part, index) for index, part in enumerate(parts)]
    listing = ", ".join(f"{index} ({label!r})" for index, label in enumerate(labels))
    if isinstance(melody_part, int):
        if not 0 <= melody_part < len(parts):
            raise InvalidArguments(f"melody_part {melody_part} is not a part of this score; its parts are {listing}.")
        return melody_part, parts[melody_part]
    if isinstance(melody_part, str):
        wanted = melody_part.strip().casefold()
        exact = [i for i, label in enumerate(labels) if label.casefold() == wanted]
        words = [i for i, label in enumerate(labels) if re.search(rf"\b{re.escape(wanted)}\b", label.casefold())]
        matches = exact or words or ([int(wanted)] if wanted.isdigit() and int(wanted) < len(parts) else [])
        if len(matches) != 1:
            problem = "names no part" if not matches else "names several parts"
            raise InvalidArguments(f"melody_part {melody_part!r} {problem}; the parts are {listing}.")
        return matches[0], parts[matches[0]]
    with_notes = [i for i, part in enumerate(parts) if any(n.pitches for n in part.recurse().notes)]
    if not with_notes:
        raise AnalysisError("The score has no notes to harmonise.")
    named = [i for i in with_notes if MELODY_LABEL.search(labels[i])]
    if named:
        return named[0], parts[named[0]]

    def height(index: int) -> float:
        heights = [top_pitch(n).ps for n in parts[index].recurse().notes if n.pitches]
        return sum(heights) / len(heights)

    highest = max(with_notes, key=height)
    return highest, parts[highest]


def _melody_events(melody: stream.Stream) -> list[tuple[Any, str]]:
    """Each note or rest of the melody in order, marked 'new' (to harmonise), 'held' (tied on) or 'rest'."""
    events: list[tuple[Any, str]] = []
    for element in melody.recurse().notesAndRests:
        if element.isRest:
            events.append((element, "rest"))
        elif (
            element.tie is not None and element.tie.type in ("stop", "continue") and events and events[-1][1] != "rest"
        ):
            events.append((element, "held"))
        else:
            events.append((element, "new"))
    return events


def _sounds(events: list[tuple[Any, str]]) -> bool:
    # A tie from nothing (after a rest, or at the start) is harmonised as a new note.
    return bool(events) and events[-1][1] != "rest"


def _accompaniment_shift(melody_midi: list[int]) -> int:
    """Semitones (whole octaves) to move the lower voices' ranges so that they fit under (or near) a melody that
    lies mostly outside the soprano's range; 0 for a melody a soprano can sing."""
    middle = sorted(melody_midi)[len(melody_midi) // 2]
    low, high = RANGES["soprano"]
    if middle < low - 3:
        return -12 * math.ceil((low - 3 - middle) / 12)
    if middle > high:
        return 12 * math.ceil((middle - high) / 12)
    return 0


def _places(count: int) -> list[str]:
    places = ["inner"] * count
    if count > 2:
        places[-2] = "penultimate"
    places[0] = "first"
    places[-1] = "last"
    return places


def harmonize_melody(
    music: stream.Score,
    *,
    style: str = "chorale",
    voice_parts: list[str] | None = None,
    melody_part: int | str | None = None,
) -> tuple[stream.Score, dict[str, Any]]:
    """Harmonise the melody part in four voices in `style`; return the voices asked for, in SATB order, and what was
    done: the key, the melody part, the chords, the rule checks over the four voices and any warnings.

    The melody is read, and the four voices written, at sounding pitch (apps.tools.services.derived.sounding), the
    pitch the key is found at: a Bb clarinet's written D is harmonised as the C it sounds, and a warning says so."""
    wanted = list(dict.fromkeys(voice_parts or VOICES))
    unknown = [v for v in wanted if v not in VOICES]
    if unknown:
        raise InvalidArguments(f"Unknown voice part(s) {unknown}; use soprano, alto, tenor, bass.")
    if "soprano" not in wanted:
        raise InvalidArguments("voice_parts must include 'soprano': the melody is the soprano.")
    if style not in VOCABULARY:
        raise InvalidArguments(f"Unknown style {style!r}; use one of: {', '.join(VOCABULARY)}.")
    written = music
    music = sounding(music)
    index, melody = melody_part_select(music, melody_part)
    label = part_label(melody, index)
    events = _melody_events(melody)
    new_notes = [element for element, kind in events if kind == "new"]
    if not new_notes:
        raise AnalysisError(f"The melody part {label!r} has no notes to harmonise.")
    # The key whose tonic chord can close under the tune's last note: a tune alone is a weak witness of its key,
    # and an A minor tune ending on A, read as E major, ended on an E major chord under its A.
    final = top_pitch(new_notes[-1]).pitchClass
    in_key = score_key(music, fits=lambda guess: (final - guess.pitch_class) % 12 in TONIC_TRIAD[guess.mode])
    chords = _chords(style, in_key)
    leading_tone = (in_key.tonic.pitchClass + 11) % 12
    sopranos = [top_pitch(n) for n in new_notes]
    shift = _accompaniment_shift([p.midi for p in sopranos])

    positions = []
    places = iter(_places(len(new_notes)))
    for element, kind in events:
        if kind == "new":
            positions.append(
                _candidates(
                    top_pitch(element),
                    chords,
                    place=next(places),
                    leading_tone=leading_tone,
                    shift=shift,
                )
            )
    path = _best_path(positions, _root_motion(chords))
    chosen = [
        dict(zip(VOICES, position.pitches[row], strict=True)) for position, row in zip(positions, path, strict=True)
    ]
    progression = [position.figures[row] for position, row in zip(positions, path, strict=True)]

    voicings: list[dict[str, pitch.Pitch] | None] = []
    previous: dict[str, pitch.Pitch] | None = None
    harmonised = iter(chosen)
    for _, kind in events:
        if kind == "rest":
            voicings.append(None)
        elif kind == "held" and previous is not None:
            voicings.append(previous)
        else:
            previous = next(harmonised)
            voicings.append(previous)

    four = stream.Score([_voice_part(melody, voice, voicings) for voice in VOICES])
    final_tonic = progression[-1].rstrip("6") == chords[0].figure
    violations = voice_leading_violations(four, in_key=in_key if final_tonic else None)
    result = stream.Score([part for part, voice in zip(four.parts, VOICES, strict=True) if voice in wanted])
    info = {
        "key": key_name(in_key),
        "style": style,
        "melody_part": {"part": index, "part_label": label},
        "voice_parts": [v for v in VOICES if v in wanted],
        "chords": len(progression),
        "progression": progression,
        "checks": violation_counts(violations),
        "violations": violations[:20],
        "warnings": _warnings(
            positions, new_notes, shift, transposed=label if index in transposing_parts(written) else None
        ),
    }
    return result, info


def _warnings(positions: list[_Position], new_notes: list[Any], shift: int, *, transposed: str | None) -> list[str]:
    """What a singer should know; `transposed`: the melody part's label when it is written at other than its
    sounding pitch."""
    warnings = []
    if transposed is not None:
        warnings.append(
            f"The melody part {transposed!r} is written at other than its sounding pitch (a transposing instrument): "
            "it was harmonised, and the four voices are written, at sounding pitch."
        )
    low, high = RANGES["soprano"]
    outside = [n for n in new_notes if not low <= top_pitch(n).midi <= high]
    if outside:
        bars = sorted({n.measureNumber for n in outside if n.measureNumber is not None})
        warnings.append(
            f"{len(outside)} melody note(s) lie outside the soprano range C4-G5 (bars {', '.join(map(str, bars))})."
        )
    if shift:
        octaves = abs(shift) // 12
        direction = "lower" if shift < 0 else "higher"
        warnings.append(
            f"The melody lies mostly outside the soprano range, so the alto, tenor and bass were written {octaves} "
            f"octave(s) {direction} than their usual ranges to stay in order with it: this is not for four singers."
        )
    relaxed = [n for n, p in zip(new_notes, positions, strict=True) if p.tier > 0]
    if relaxed:
        bars = sorted({n.measureNumber for n in relaxed if n.measureNumber is not None})
        warnings.append(
            f"Under {len(relaxed)} melody note(s) the lower voices could not keep their ranges and spacing "
            f"(bars {', '.join(map(str, bars))})."
        )
    return warnings


def _voice_part(melody: stream.Stream, voice: str, voicings: list[dict[str, pitch.Pitch] | None]) -> stream.Part:
    """A copy of the melody's part (measures, pickup, signatures) with this voice's pitches and clef."""
    part = copy.deepcopy(melody)
    part.partName = voice.capitalize()
    part.id = voice.capitalize()
    for old in list(part.recurse().getElementsByClass(clef.Clef)):
        old.activeSite.remove(old)
    for instrument in list(part.recurse().getElementsByClass("Instrument")):
        instrument.activeSite.remove(instrument)
    first_measure = part.getElementsByClass(stream.Measure).first() or part
    first_measure.insert(0, CLEFS[voice]())
    elements = list(part.recurse().notesAndRests)
    for element, voicing in zip(elements, voicings, strict=True):
        if voicing is None:
            continue
        replacement = note.Note(voicing[voice])
        replacement.duration = copy.deepcopy(element.duration)
        replacement.tie = copy.deepcopy(element.tie)
        if voice == "soprano":
            replacement.lyrics = copy.deepcopy(element.lyrics)
            replacement.expressions = copy.deepcopy(element.expressions)
        element.activeSite.replace(element, replacement)
    return part
