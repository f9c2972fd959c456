"""Species counterpoint (Fux, species 1-5) against a cantus firmus, and an independent rule check.

The generator is a beam search over diatonic pitches in which each rule is a cost (a broken rule costs far more
than any matter of taste), so it always finishes and prefers correct music. `check_counterpoint` is written
separately, from the rules as a teacher marks an exercise, so that it can catch the generator's mistakes; its
findings are reported with every generated exercise.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from music21 import clef, key, meter, note, pitch, stream, tie

from apps.core.errors import AnalysisError, InvalidArguments
from apps.tools.services.derived import sounding
from apps.tools.services.spelling import pitch_name

CONSONANT = {0, 3, 4, 7, 8, 9}  # interval classes in semitones; the fourth counts as a dissonance in two parts
PERFECT = {0, 7}
BROKEN = 1000.0  # the cost of breaking a rule
BEAM = 150
MAX_CANTUS = 200
# Semitones of the major, minor and perfect intervals of each generic size, unison to seventh: a melodic interval
# spelled with other semitones is augmented or diminished (C-C#, F-G#, C#-F), which strict counterpoint forbids.
PLAIN = ({0}, {1, 2}, {3, 4}, {5}, {7}, {8, 9}, {10, 11})
# Rhythm of each inner measure per species, in quarter notes of a 4/4 bar (species 5 cycles through these).
FLORID = ([2.0, 2.0], [1.0, 1.0, 2.0], [1.0, 1.0, 1.0, 1.0], [2.0, 1.0, 1.0])


@dataclass(frozen=True)
class Slot:
    measure: int
    beat: float  # 1-based, in quarters
    duration: float
    held: bool = False  # species 4: the previous note tied over the bar


@dataclass(frozen=True)
class _State:
    cost: float
    pitches: tuple[pitch.Pitch, ...]


def _rhythm(species: int, measures: int) -> list[Slot]:
    slots: list[Slot] = []
    for m in range(measures):
        last = m == measures - 1
        if last or species == 1:
            durations, held_first = [4.0], False
        elif species == 2:
            durations, held_first = [2.0, 2.0], False
        elif species == 3:
            durations, held_first = [1.0] * 4, False
        elif species == 4:
            durations, held_first = [2.0, 2.0], m > 0
        else:
            durations, held_first = list(FLORID[(m - 1) % len(FLORID)] if m else [2.0, 2.0]), False
        beat = 1.0
        for i, duration in enumerate(durations):
            if species == 4 and m == 0 and i == 0:
                beat += duration  # species 4 opens with a half rest
                continue
            slots.append(Slot(m, beat, duration, held=held_first and i == 0))
            beat += duration
    return slots


def _vertical(cp: pitch.Pitch, cf: pitch.Pitch, above: bool) -> int:
    return int(cp.midi - cf.midi) if above else int(cf.midi - cp.midi)


def _candidates(cantus: list[pitch.Pitch], signature: key.KeySignature, above: bool) -> list[pitch.Pitch]:
    scale = signature.getScale("major")
    names = {p.pitchClass: p.name for p in scale.getPitches("C4", "B4")}
    low = min(p.midi for p in cantus) - (16 if not above else 0)
    high = max(p.midi for p in cantus) + (16 if above else 0)
    found = []
    for midi in range(low, high + 1):
        if midi % 12 in names:
            spelled = pitch.Pitch(names[midi % 12])
            spelled.octave = (midi - spelled.pitchClass) // 12 - 1
            found.append(spelled)
    return found


def _leading_tones(final: pitch.Pitch, candidates: list[pitch.Pitch]) -> list[pitch.Pitch]:
    """The raised seventh below the final in every octave of the candidates' range (musica ficta, for the cadence
    only: C# before D in the dorian mode)."""
    low, high = candidates[0].midi, candidates[-1].midi
    found = []
    for octaves in range(-3, 4):
        raised = final.transpose("-m2").transpose(12 * octaves)
        if low <= raised.midi <= high and raised.midi not in {c.midi for c in candidates}:
            found.append(raised)
    return found


def generate_counterpoint(
    music: stream.Score, *, species: int = 1, voice_position: str = "above"
) -> tuple[stream.Score, dict[str, Any]]:
    """Write species counterpoint against the top part (the cantus firmus, one note per measure). The cantus is
    read, and both parts written, at sounding pitch (apps.tools.services.derived.sounding): a Bb clarinet's written
    D is the C it sounds, its key signature the concert pitch's."""
    if species not in (1, 2, 3, 4, 5):
        raise InvalidArguments(f"species must be 1 to 5, got {species}.")
    if voice_position not in ("above", "below"):
        raise InvalidArguments(f"voice_position must be 'above' or 'below', got {voice_position!r}.")
    music = sounding(music)
    top = music.parts[0] if music.parts else music
    cantus = [max(n.pitches, key=lambda p: p.ps) for n in top.stripTies().flatten().notes if n.pitches]
    if len(cantus) < 3:
        raise AnalysisError("A cantus firmus needs at least 3 notes; the top part has fewer.")
    if len(cantus) > MAX_CANTUS:
        raise InvalidArguments(f"A cantus firmus of at most {MAX_CANTUS} notes, please; this one has {len(cantus)}.")
    signature = next(iter(top.recurse().getElementsByClass(key.KeySignature)), None) or key.KeySignature(0)
    above = voice_position == "above"
    slots = _rhythm(species, len(cantus))
    pitches = _search(cantus, slots, _candidates(cantus, signature, above), above, species)
    result = _score(cantus, slots, pitches, above, signature)
    notes = [
        {"measure": s.measure + 1, "beat": s.beat, "midi": p.midi, "held": s.held, "name": p.nameWithOctave}
        for s, p in zip(slots, pitches, strict=True)
    ]
    info = {
        "species": species,
        "voice_position": voice_position,
        "cantus_notes": len(cantus),
        "counterpoint_notes": sum(1 for s in slots if not s.held),
        "final": pitch_name(cantus[-1]),
        "violations": check_counterpoint([p.midi for p in cantus], notes, species=species, above=above),
    }
    return result, info


def _search(
    cantus: list[pitch.Pitch], slots: list[Slot], candidates: list[pitch.Pitch], above: bool, species: int
) -> list[pitch.Pitch]:
    final = cantus[-1]
    beams = [_State(0.0, ())]
    for index, slot in enumerate(slots):
        is_last = index == len(slots) - 1
        is_penultimate = index == len(slots) - 2
        options = list(candidates)
        if is_penultimate:
            options.extend(_leading_tones(final, candidates))
        expanded: dict[tuple[int, ...], _State] = {}
        for state in beams:
            choices = [state.pitches[-1]] if slot.held else options
            for choice in choices:
                cost = state.cost + _cost(state.pitches, choice, index, slots, cantus, above, species)
                if is_last and (choice.pitchClass != final.pitchClass or abs(choice.midi - state.pitches[-1].midi) > 2):
                    cost += BROKEN  # the final, reached by step
                if is_penultimate and min((choice.midi - final.midi) % 12, (final.midi - choice.midi) % 12) > 2:
                    cost += BROKEN  # the cadence comes by step
                pitches = (*state.pitches, choice)
                signature = tuple(p.midi for p in pitches[-3:])
                if signature not in expanded or expanded[signature].cost > cost:
                    expanded[signature] = _State(cost, pitches)
        beams = sorted(expanded.values(), key=lambda s: (s.cost, tuple(p.midi for p in s.pitches)))[:BEAM]
    return list(beams[0].pitches)


def _cost(
    previous: tuple[pitch.Pitch, ...],
    choice: pitch.Pitch,
    index: int,
    slots: list[Slot],
    cantus: list[pitch.Pitch],
    above: bool,
    species: int,
) -> float:
    slot = slots[index]
    cf = cantus[slot.measure]
    vertical = _vertical(choice, cf, above)
    cost = 0.0
    if vertical < 0:
        cost += BROKEN  # crossing
    if vertical > 16:
        cost += 2.0  # wider than a tenth
    consonant = vertical % 12 in CONSONANT
    downbeat = slot.beat == 1.0
    if index == 0 and vertical % 12 not in ({0, 7} if above else {0}):
        cost += BROKEN
    if index == len(slots) - 1 and vertical % 12 != 0:
        cost += BROKEN
    if not previous:
        return cost
    before = previous[-1]
    step = int(choice.midi - before.midi)
    if slot.held:
        # A suspension may be dissonant, but it must resolve down by step (checked at the next note); a
        # consonant one must not make fifths or octaves with the previous downbeat.
        last_downbeat = _last_downbeat_vertical(previous, index, slots, cantus, above)
        if vertical % 12 in PERFECT and last_downbeat is not None and last_downbeat % 12 == vertical % 12:
            cost += BROKEN
        return cost
    prev_slot = slots[index - 1]
    prev_cf = cantus[prev_slot.measure]
    prev_vertical = _vertical(before, prev_cf, above)
    if prev_slot.held and prev_vertical % 12 not in CONSONANT and not (-2 <= step <= -1 and consonant):
        cost += BROKEN  # an unresolved suspension
    if not consonant and (downbeat or species == 4):
        cost += BROKEN  # species 4 prepares each suspension with a consonance
    if not downbeat and not consonant and not 0 < abs(step) <= 2:
        cost += BROKEN  # a weak-beat dissonance is approached by step (and left by step, checked next)
    if len(previous) >= 2 and not prev_slot.held and prev_slot.beat != 1.0 and prev_vertical % 12 not in CONSONANT:
        earlier = previous[-2]
        if not (0 < abs(step) <= 2 and (step > 0) == (before.midi - earlier.midi > 0)):
            cost += BROKEN
    if abs(step) > 12 or abs(step) in (6, 10, 11):
        cost += BROKEN  # a leap beyond the octave, a tritone or a seventh
    if step and augmented_or_diminished(before, choice):
        cost += BROKEN  # a chromatic step (C-C#) or an augmented second, a diminished fourth
    cost += 0.0 if abs(step) <= 2 else 0.6 * abs(step) / 2
    if step == 0 and not slot.held:
        cost += 3.0 if species > 1 else 1.5
    cantus_motion = int(cf.midi - prev_cf.midi)
    similar = step * cantus_motion > 0
    if vertical % 12 in PERFECT and step != 0:
        if downbeat or species == 1:
            last_downbeat = _last_downbeat_vertical(previous, index, slots, cantus, above)
            if last_downbeat is not None and last_downbeat % 12 == vertical % 12 and cantus_motion != 0:
                cost += BROKEN  # parallel fifths or octaves between downbeats
        if prev_vertical % 12 == vertical % 12 and cantus_motion != 0:
            cost += BROKEN  # consecutive fifths or octaves
        if similar and species == 1:
            cost += BROKEN  # a direct (hidden) fifth or octave
        if 0 < index < len(slots) - 1:
            cost += 1.0 if vertical % 12 == 7 else 2.5
    cost += 0.4 if similar else 0.0
    return cost


def augmented_or_diminished(a: pitch.Pitch, b: pitch.Pitch) -> bool:
    """Whether the interval from `a` to `b`, as spelled, is augmented or diminished (C-C#, Bb-C#, C#-F), counted
    from the letters and octaves rather than with music21's Interval, which is too slow for the search."""
    low, high = sorted((a, b), key=lambda p: (p.diatonicNoteNum, p.ps))
    generic = high.diatonicNoteNum - low.diatonicNoteNum
    semitones = round(high.ps - low.ps) - 12 * (generic // 7)
    return semitones not in PLAIN[generic % 7]


def _last_downbeat_vertical(
    previous: tuple[pitch.Pitch, ...], index: int, slots: list[Slot], cantus: list[pitch.Pitch], above: bool
) -> int | None:
    measure = slots[index].measure
    for back in range(index - 1, -1, -1):
        if slots[back].measure < measure and slots[back].beat == 1.0:
            return _vertical(previous[back], cantus[slots[back].measure], above)
    return None


def _score(
    cantus: list[pitch.Pitch], slots: list[Slot], pitches: list[pitch.Pitch], above: bool, signature: key.KeySignature
) -> stream.Score:
    counterpoint = stream.Part(id="Counterpoint")
    counterpoint.partName = "Counterpoint"
    cantus_part = stream.Part(id="Cantus firmus")
    cantus_part.partName = "Cantus firmus"
    low_cp = min(p.midi for p in pitches) < 57
    low_cf = min(p.midi for p in cantus) < 57
    for m, cf in enumerate(cantus):
        cp_measure, cf_measure = stream.Measure(number=m + 1), stream.Measure(number=m + 1)
        if m == 0:
            for measure, low in ((cp_measure, low_cp), (cf_measure, low_cf)):
                measure.append(clef.BassClef() if low else clef.TrebleClef())
                measure.append(key.KeySignature(signature.sharps))
                measure.append(meter.TimeSignature("4/4"))
        cf_measure.append(note.Note(cf, quarterLength=4.0))
        in_measure = [(s, p) for s, p in zip(slots, pitches, strict=True) if s.measure == m]
        if in_measure and in_measure[0][0].beat > 1.0:
            cp_measure.append(note.Rest(quarterLength=in_measure[0][0].beat - 1.0))
        for slot, p in in_measure:
            cp_measure.append(note.Note(p, quarterLength=slot.duration))
        counterpoint.append(cp_measure)
        cantus_part.append(cf_measure)
    notes = list(counterpoint.recurse().notes)
    held = [s.held for s in slots]
    for i, flag in enumerate(held):
        if flag:
            notes[i - 1].tie = tie.Tie("start")
            notes[i].tie = tie.Tie("stop")
    score = stream.Score()
    for part in (counterpoint, cantus_part) if above else (cantus_part, counterpoint):
        score.insert(0, part)
    return score


# --- The independent check --------------------------------------------------------------------------------------


def check_counterpoint(
    cantus: list[int], notes: list[dict[str, Any]], *, species: int, above: bool = True
) -> list[dict[str, Any]]:
    """Mark a counterpoint exercise. `cantus`: MIDI numbers, one per measure; `notes`: the counterpoint as dicts
    with `measure` (1-based), `beat` (1-based quarters), `midi`, `held` (tied over from the previous note) and, if
    known, `name` (the pitch as spelled, `C#5`: without it an augmented or diminished step that sounds like a plain
    one, C-C# like C-Db, is not caught). Returns the rules broken, each with its measure."""
    found: list[dict[str, Any]] = []

    def flag(rule: str, measure: int, detail: str) -> None:
        found.append({"rule": rule, "measure": measure, "detail": detail})

    def interval_above(n: dict[str, Any]) -> int:
        cf = cantus[n["measure"] - 1]
        return n["midi"] - cf if above else cf - n["midi"]

    names = {0: "unison/octave", 7: "fifth"}
    for n in notes:
        size = interval_above(n)
        if size < 0:
            flag("voice_crossing", n["measure"], "the counterpoint crosses the cantus")
    first, last = notes[0], notes[-1]
    if interval_above(first) % 12 not in ({0, 7} if above else {0}):
        flag("opening", first["measure"], "the first interval must be a perfect consonance")
    if interval_above(last) % 12 != 0 or (last["midi"] - cantus[-1]) % 12:
        flag("ending", last["measure"], "the last interval must be a unison or octave on the final")
    if len(notes) >= 2 and abs(notes[-1]["midi"] - notes[-2]["midi"]) > 2:
        flag("cadence", last["measure"], "the final must be approached by step")

    for i, n in enumerate(notes):
        size = interval_above(n) % 12
        prev = notes[i - 1] if i else None
        nxt = notes[i + 1] if i + 1 < len(notes) else None
        if size in CONSONANT:
            continue
        if n["beat"] == 1.0 and not n["held"]:
            flag(
                "dissonant_downbeat", n["measure"], f"a dissonance ({size} semitone{'s' * (size != 1)}) on the downbeat"
            )
        elif n["held"]:
            if nxt is None or not (1 <= n["midi"] - nxt["midi"] <= 2) or interval_above(nxt) % 12 not in CONSONANT:
                flag("unresolved_suspension", n["measure"], "a suspension must resolve down by step to a consonance")
        elif prev is None or nxt is None:
            flag("dissonance", n["measure"], "a dissonance at the edge of the exercise")
        else:
            into, out = n["midi"] - prev["midi"], nxt["midi"] - n["midi"]
            if not (0 < abs(into) <= 2 and 0 < abs(out) <= 2 and (into > 0) == (out > 0)):
                flag("dissonance_not_passing", n["measure"], "a weak-beat dissonance must pass by step")

    # Fifths or octaves in a row, both voices moving: from downbeat to downbeat (what the ear follows across the
    # weak beats between them), and from a weak beat to the next downbeat (the notes next to each other).
    downbeats = [n for n in notes if n["beat"] == 1.0]
    weak_to_strong = [(a, b) for a, b in itertools.pairwise(notes) if a["beat"] != 1.0 and b["beat"] == 1.0]
    for a, b in [*itertools.pairwise(downbeats), *weak_to_strong]:
        ia, ib = interval_above(a) % 12, interval_above(b) % 12
        moved = a["midi"] != b["midi"] and cantus[a["measure"] - 1] != cantus[b["measure"] - 1]
        if ia == ib and ia in PERFECT and moved:
            flag(f"parallel_{'fifths' if ia == 7 else 'octaves'}", b["measure"], f"consecutive {names[ia]}s")
    for a, b in itertools.pairwise(notes):
        leap = abs(b["midi"] - a["midi"])
        if b["held"]:
            continue
        if leap > 12:
            flag("leap_too_large", b["measure"], f"a leap of {leap} semitones")
        elif leap in (6, 10, 11):
            flag("forbidden_leap", b["measure"], f"a melodic tritone or seventh ({leap} semitones)")
        elif "name" in a and "name" in b and augmented_or_diminished(pitch.Pitch(a["name"]), pitch.Pitch(b["name"])):
            spelled = " to ".join(pitch_name(pitch.Pitch(n["name"]), octave=True) for n in (a, b))
            flag("augmented_or_diminished_step", b["measure"], f"an augmented or diminished melodic step ({spelled})")
    return found
