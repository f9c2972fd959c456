"""Composition: transposition, four-part harmonisation, style imitation. Pure functions from streams to new streams.

The input stream comes from the shared parsed-score cache: nothing here changes it. New music is built from deep
copies or from scratch. Species counterpoint lives in `counterpoint.py`.
"""

from __future__ import annotations

import copy
import itertools
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from music21 import clef, key, meter, note, pitch, roman, stream
from music21 import interval as m21interval

from apps.core.errors import AnalysisError, InvalidArguments
from apps.tools.services.counterpoint import generate_counterpoint  # noqa: F401 - part of this module's API
from apps.tools.services.summary import key_signature_name

# --- Transposition ----------------------------------------------------------------------------------------------


def _key_signature_name(music: stream.Score) -> str:
    signature = next(iter(music.recurse().getElementsByClass(key.KeySignature)), None)
    return "none" if signature is None else key_signature_name(signature.sharps)


def transpose(music: stream.Score, *, interval: str) -> tuple[stream.Score, dict[str, Any]]:
    """The score transposed by `interval` ('P5', 'M2', '-m3'), key signatures included."""
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
    result = music.transpose(step)
    info = {
        "interval": step.directedName,
        "semitones": step.semitones,
        "direction": "up" if step.semitones > 0 else "down" if step.semitones < 0 else "none",
        "key_signature_before": _key_signature_name(music),
        "key_signature_after": _key_signature_name(result),
    }
    return result, info


def _interval(name: str) -> m21interval.Interval:
    if not name or len(name) > 6 or not name.lstrip("-")[:1].isalpha():
        raise ValueError(name)
    return m21interval.Interval(name)


# --- Harmonisation ----------------------------------------------------------------------------------------------

VOICES = ("soprano", "alto", "tenor", "bass")
# Comfortable ranges (MIDI numbers) of the lower voices; the soprano is the melody as given.
RANGES = {"alto": (55, 74), "tenor": (48, 67), "bass": (40, 62)}
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

# Cost of moving between chord roots, by the rise in scale degrees (mod 7): falling fifths are the strongest motion.
ROOT_MOTION = {3: 0.0, 1: 1.0, 5: 1.0, 4: 1.5, 0: 1.5, 2: 2.0, 6: 2.5}


@dataclass(frozen=True)
class _Chord:
    figure: str
    degree: int
    pitch_classes: tuple[int, ...]  # root first
    names: dict[int, str]  # pitch class -> spelled name in the key
    seventh: bool


def _chords(style: str, in_key: key.Key) -> list[_Chord]:
    chords = []
    for figure in VOCABULARY[style][in_key.mode if in_key.mode in ("major", "minor") else "major"]:
        rn = roman.RomanNumeral(figure, in_key)
        ordered = [rn.root(), *[p for p in rn.pitches if p.name != rn.root().name]]
        chords.append(
            _Chord(
                figure=figure,
                degree=int(rn.scaleDegree),
                pitch_classes=tuple(dict.fromkeys(p.pitchClass for p in ordered)),
                names={p.pitchClass: p.name for p in ordered},
                seventh=rn.isSeventh(),
            )
        )
    return chords


def _melody_events(melody: stream.Part) -> list[tuple[Any, str]]:
    """Each note or rest of the melody in order, marked 'new' (to harmonise), 'held' (tied on) or 'rest'."""
    events = []
    for element in melody.recurse().notesAndRests:
        if element.isRest:
            events.append((element, "rest"))
        elif element.tie is not None and element.tie.type in ("stop", "continue"):
            events.append((element, "held"))
        else:
            events.append((element, "new"))
    return events


def _top(element: Any) -> pitch.Pitch:
    return max(element.pitches, key=lambda p: p.ps)


def _choose_progression(melody_pcs: list[int], chords: list[_Chord]) -> list[_Chord]:
    """The cheapest chord sequence (Viterbi) where each chord holds its melody note and the ending cadences."""
    tonic = chords[0]
    dominants = {c.figure for c in chords if c.degree in (5, 7)}
    count = len(melody_pcs)

    def local(position: int, chord: _Chord) -> float:
        cost = 0.0 if melody_pcs[position] in chord.pitch_classes else 6.0  # a non-chord melody note
        if position == 0 and chord is not tonic:
            cost += 2.0
        if position == count - 1 and chord is not tonic:
            cost += 12.0
        if position == count - 2 and count > 2 and chord.figure not in dominants:
            cost += 2.5
        return cost

    def move(a: _Chord, b: _Chord) -> float:
        cost = ROOT_MOTION[(b.degree - a.degree) % 7]
        if a.degree in (5, 7) and b.degree in (2, 4):
            cost += 4.0  # dominant back to predominant: a retrogression
        return cost

    best: list[dict[str, tuple[float, list[_Chord]]]] = [{c.figure: (local(0, c), [c]) for c in chords}]
    for position in range(1, count):
        layer = {}
        for chord in chords:
            here = local(position, chord)
            cost, path = min(
                ((prev_cost + move(path[-1], chord) + here, path) for prev_cost, path in best[-1].values()),
                key=lambda item: item[0],
            )
            layer[chord.figure] = (cost, [*path, chord])
        best = [layer]
    return min(best[-1].values(), key=lambda item: item[0])[1]


def _in_range(name: str, low: int, high: int) -> list[pitch.Pitch]:
    found = []
    for octave in range(1, 7):
        candidate = pitch.Pitch(f"{name}{octave}")
        if low <= candidate.midi <= high:
            found.append(candidate)
    return found


def _parallel(before: tuple[int, int], after: tuple[int, int]) -> bool:
    (upper0, lower0), (upper1, lower1) = before, after
    moved_same_way = (upper1 - upper0) * (lower1 - lower0) > 0
    return moved_same_way and (upper0 - lower0) % 12 in (0, 7) and (upper1 - lower1) % 12 == (upper0 - lower0) % 12


def _voice(chord: _Chord, soprano: pitch.Pitch, previous: dict[str, pitch.Pitch] | None) -> dict[str, pitch.Pitch]:
    """Alto, tenor and bass for `chord` under `soprano`: complete chord, ranges, no crossing, smooth, no parallels."""
    root_name = chord.names[chord.pitch_classes[0]]
    bass_options = _in_range(root_name, *RANGES["bass"])
    target = previous["bass"].midi if previous else 50
    bass = min(bass_options, key=lambda p: abs(p.midi - target))
    essential = set(chord.pitch_classes[:2]) | ({chord.pitch_classes[3]} if chord.seventh else set(chord.pitch_classes))
    best: tuple[float, dict[str, pitch.Pitch]] | None = None
    for relaxed in (False, True):
        for alto_pc, tenor_pc in itertools.product(chord.pitch_classes, repeat=2):
            if not essential <= {soprano.pitchClass, bass.pitchClass, alto_pc, tenor_pc}:
                continue
            low_alto, high_alto = (bass.midi, soprano.midi) if relaxed else RANGES["alto"]
            low_tenor, high_tenor = (bass.midi, soprano.midi) if relaxed else RANGES["tenor"]
            for alto in _in_range(chord.names[alto_pc], low_alto, min(high_alto, soprano.midi)):
                for tenor in _in_range(chord.names[tenor_pc], max(low_tenor, bass.midi), min(high_tenor, alto.midi)):
                    if soprano.midi - alto.midi > 12 or alto.midi - tenor.midi > 12:
                        continue
                    voicing = {"soprano": soprano, "alto": alto, "tenor": tenor, "bass": bass}
                    cost = _voicing_cost(voicing, previous, chord)
                    if best is None or cost < best[0]:
                        best = (cost, voicing)
        if best is not None:
            return best[1]
    # A melody note too low to fit three voices under it: double it rather than cross the voices.
    return {"soprano": soprano, "alto": soprano, "tenor": soprano, "bass": bass}


def _voicing_cost(voicing: dict[str, pitch.Pitch], previous: dict[str, pitch.Pitch] | None, chord: _Chord) -> float:
    midi = {v: p.midi for v, p in voicing.items()}
    cost = 0.0
    leading_tones = sum(
        1
        for p in voicing.values()
        if chord.degree in (5, 7) and p.name == chord.names.get(chord.pitch_classes[1 if chord.degree == 5 else 0])
    )
    if leading_tones > 1:
        cost += 8.0  # a doubled leading tone
    if previous is None:
        return cost
    before = {v: p.midi for v, p in previous.items()}
    cost += sum(abs(midi[v] - before[v]) for v in ("alto", "tenor")) * 0.5
    for upper, lower in itertools.combinations(VOICES, 2):
        if _parallel((before[upper], before[lower]), (midi[upper], midi[lower])):
            cost += 40.0
    return cost


def harmonize_melody(
    music: stream.Score, *, style: str = "chorale", voice_parts: list[str] | None = None
) -> tuple[stream.Score, dict[str, Any]]:
    """Harmonise the top part in four voices in `style`; return the voices asked for, in SATB order."""
    wanted = list(dict.fromkeys(voice_parts or VOICES))
    unknown = [v for v in wanted if v not in VOICES]
    if unknown:
        raise InvalidArguments(f"Unknown voice part(s) {unknown}; use soprano, alto, tenor, bass.")
    if "soprano" not in wanted:
        raise InvalidArguments("voice_parts must include 'soprano': the melody is the soprano.")
    if style not in VOCABULARY:
        raise InvalidArguments(f"Unknown style {style!r}; use one of: {', '.join(VOCABULARY)}.")
    melody = music.parts[0] if music.parts else music
    events = _melody_events(melody)
    new_notes = [element for element, kind in events if kind == "new"]
    if not new_notes:
        raise AnalysisError("The top part has no notes to harmonise.")
    in_key = melody.analyze("key")
    chords = _chords(style, in_key)
    progression = _choose_progression([_top(n).pitchClass for n in new_notes], chords)

    voicings: list[dict[str, pitch.Pitch] | None] = []
    previous: dict[str, pitch.Pitch] | None = None
    harmonised = iter(progression)
    for element, kind in events:
        if kind == "rest":
            voicings.append(None)
        elif kind == "held" and previous is not None:
            voicings.append(previous)
        else:
            previous = _voice(next(harmonised), _top(element), previous)
            voicings.append(previous)

    result = stream.Score()
    for voice in VOICES:
        if voice in wanted:
            result.insert(0, _voice_part(melody, voice, voicings))
    info = {
        "key": f"{in_key.tonic.name} {in_key.mode}",
        "style": style,
        "voice_parts": [v for v in VOICES if v in wanted],
        "chords": len(progression),
        "progression": [c.figure for c in progression],
    }
    return result, info


def _voice_part(melody: stream.Part, voice: str, voicings: list[dict[str, pitch.Pitch] | None]) -> stream.Part:
    """A copy of the melody's part (measures, pickup, signatures) with this voice's pitches and clef."""
    part = copy.deepcopy(melody)
    part.partName = voice.capitalize()
    part.id = voice.capitalize()
    for old in list(part.recurse().getElementsByClass(clef.Clef)):
        old.activeSite.remove(old)
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


# --- Style imitation --------------------------------------------------------------------------------------------


def _learn(sources: list[stream.Score]) -> tuple[dict[Any, Counter[Any]], Counter[float], key.Key, list[int]]:
    """Second-order transitions of (scale step from the tonic, duration) over every source's top part."""
    transitions: dict[Any, Counter[Any]] = defaultdict(Counter)
    durations: Counter[float] = Counter()
    keys: Counter[tuple[str, str]] = Counter()
    heights: list[int] = []
    for source in sources:
        melody = source.parts[0] if source.parts else source
        notes = list(melody.stripTies().flatten().notes)
        if len(notes) < 3:
            continue
        found = melody.analyze("key")
        keys[(found.tonic.name, found.mode)] += len(notes)
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
        raise AnalysisError("The sources have no melody to learn from (their top parts have fewer than 3 notes).")
    (tonic_name, mode), _ = keys.most_common(1)[0]
    return transitions, durations, key.Key(tonic_name, mode), heights


def imitate_style(
    sources: list[stream.Score], *, length: int = 8, seed: int = 0
) -> tuple[stream.Score, dict[str, Any]]:
    """A new melody of `length` 4/4 measures from a second-order Markov model of the sources' top parts, in their
    most common key (each source's melody is learnt relative to its own tonic), ending on the tonic."""
    transitions, durations, in_key, heights = _learn(sources)
    rng = random.Random(seed)  # noqa: S311 - reproducible music, not secrets
    tonic = in_key.tonic.midi % 12 + 60
    low, high = min(heights) - 60, max(heights) - 60  # the learnt range, in semitones from the tonic
    bar = 4.0
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
    part.append(meter.TimeSignature("4/4"))
    part.append(in_key)
    names = {p.pitchClass: p.name for p in in_key.getScale().getPitches()}
    for step, duration in melody:
        part.append(note.Note(_spelled(tonic + step, names), quarterLength=duration))
    result = stream.Score()
    result.insert(0, part.makeMeasures())
    info = {
        "key": f"{in_key.tonic.name} {in_key.mode}",
        "time_signature": "4/4",
        "measures": length,
        "seed": seed,
        "sources": len(sources),
        "notes": len(melody),
        "durations_learnt": sorted(durations),
    }
    return result, info


def _spelled(midi: int, names: dict[int, str]) -> pitch.Pitch:
    """The pitch `midi` spelled as the key spells its scale degrees (Bb rather than A# in F major)."""
    plain = pitch.Pitch(midi=midi)
    if plain.pitchClass not in names:
        return plain
    spelled = pitch.Pitch(names[plain.pitchClass])
    spelled.octave = plain.octave
    while spelled.midi < midi:
        spelled.octave += 1
    while spelled.midi > midi:
        spelled.octave -= 1
    return spelled
