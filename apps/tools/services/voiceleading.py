"""Voice leading between every pair of parts. Pure functions from a music21 stream to a dict.

The stream comes from the shared parsed-score cache, so nothing here may change it: the parts are read through
`flatten()` (which builds a new stream) and ties are merged here instead of with `stripTies()` (which would copy every
note of the score, most of the cost of these tools).

Offsets are kept exact: music21 gives tuplet offsets as `Fraction`s (a triplet sixteenth starts at 11/6), and the same
onset compared as floats can land either side of a note's end, which once made a false parallel fifth in Mozart's
K155/ii bar 36."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from math import isfinite
from typing import Any

from music21 import base, meter, note, pitch, stream
from music21.common.numberTools import opFrac

from apps.tools.services.derived import derived, sounding
from apps.tools.services.keys import _require_notes
from apps.tools.services.rounding import rounded
from apps.tools.services.spelling import pitch_name
from apps.tools.services.summary import part_labels

# Two parts that sound the same line in octaves or unison for at least this many consecutive notes are doubling each
# other on purpose (colla parte, a cello doubled by the bass, violins in octaves): their parallel octaves are reported
# as `doublings`, not as errors. Two or fewer in a row is the classic part-writing fault.
DOUBLING_MIN_NOTES = 3

Offset = float | Fraction


@dataclass
class Event:
    """One sounding note (the top pitch of a chord) or rest of a part, ties merged; offsets exact (`opFrac`)."""

    offset: Offset
    end: Offset
    pitch: pitch.Pitch | None  # None for a rest
    element: base.Music21Object  # the score's first element of the note
    measure: int | None  # the printed measure number
    meter: meter.TimeSignature | None
    in_measure: Offset  # from the start of a full bar (a pickup's missing beats included)
    # The beats worked out for this line, by meter and place in the bar (shared by its events).
    beats: dict[tuple[int, Offset], float] = field(repr=False, compare=False)
    # The pitch's semitone number, None for a rest: read once, as music21 computes `Pitch.ps` anew on every read.
    ps: float | None = None

    @property
    def duration(self) -> Offset:
        return opFrac(self.end - self.offset)

    @cached_property
    def beat(self) -> float:
        """1-based, in the meter's beats (music21's `beat`, without its context search through every site); once
        per meter and place in the bar for the whole line, as most notes share a few places."""
        if self.meter is None:  # music21's beat: NaN with no meter at all, then the quarter note from the bar's start
            beat = float(self.element.beat)
            return (rounded(beat) or 1.0) if isfinite(beat) else rounded(float(self.in_measure) + 1)
        key = (id(self.meter), self.in_measure)  # the meters live as long as the score, and so this line
        found = self.beats.get(key)
        if found is None:
            found = self.beats[key] = rounded(float(self.meter.getBeatProportion(self.in_measure))) or 1.0
        return found

    @cached_property
    def name(self) -> str:
        return pitch_name(self.pitch, octave=True) if self.pitch is not None else "rest"

    # Read once each, as music21 works a pitch's name and letter position out anew on every read. Notes only.
    @cached_property
    def spelling(self) -> str:
        """The pitch's name without its octave, as spelled (`C#`)."""
        return self.pitch.name  # type: ignore[union-attr]

    @cached_property
    def letter_position(self) -> int:
        """The pitch's letter name and octave as one number (music21's `diatonicNoteNum`): differences are steps."""
        return self.pitch.diatonicNoteNum  # type: ignore[union-attr]


def _elements(
    part: stream.Stream,
) -> Iterator[tuple[Offset, Offset, base.Music21Object, stream.Measure | None, Any]]:
    """(offset in the part, offset in its measure, note or rest, its measure, the meter in force) in time order,
    measure by measure; voices inside a measure included."""
    # The part's own elements rather than its iterator, which would make the part each measure's active site (a
    # write to the shared score) and set up a filtered iteration; the same measures, in the same (sorted) order.
    measures = [element for element in part.elements if isinstance(element, stream.Measure)]
    if not measures:
        for element in part.flatten().notesAndRests:
            at = opFrac(element.offset)
            yield at, at, element, None, None
        return
    current = None
    for number, measure in enumerate(measures):
        # Offsets in the part's own table, not `.offset` (the offset in the active site, which another thread's
        # music21 call on the same shared score can move for a moment): the line is kept with the score once made.
        base_offset = part.elementOffset(measure)
        # One pass over the measure for what `.timeSignature` (the one at offset 0), `.notesAndRests` and `.voices`
        # would each find with an iteration of their own; over its `elements` (in the order iterating gives), as
        # iterating also makes the measure each element's active site, a write to the shared score this needs not.
        found, voices, own_meter = [], [], None
        for element in measure.elements:
            if isinstance(element, note.GeneralNote):
                within = measure.elementOffset(element)
                found.append((opFrac(base_offset + within), within, element))
            elif isinstance(element, stream.Voice):
                voices.append(element)
            elif own_meter is None and isinstance(element, meter.TimeSignature) and measure.elementOffset(element) == 0:
                own_meter = element
        if number == 0 and own_meter is None:  # the context search is slow, and an opening bar usually has its own
            own_meter = part.timeSignature
            if own_meter is None:
                own_meter = part.getContextByClass(meter.TimeSignature)
        current = own_meter or current
        for voice in voices:
            voice_offset = measure.elementOffset(voice)
            for e in voice.notesAndRests:
                within = opFrac(voice_offset + voice.elementOffset(e))
                found.append((opFrac(base_offset + within), within, e))
        found.sort(key=lambda item: item[0])
        for at, within, element in found:
            yield at, within, element, measure, current


def part_line(part: stream.Stream) -> list[Event]:
    """The part as one line of events in time order: the top note of a chord (or of notes sounding together in two
    voices of the part), tied notes merged into one, grace notes left out. A note that starts before the previous one
    ends cuts the previous one short. Worked out once per parsed score (apps.tools.services.derived) and shared by
    the voice-leading and pattern tools: read-only. The notes are the part's own: the tools pass the parts of the
    music as it sounds (apps.tools.services.derived.sounding)."""
    return derived(part, "line", lambda: _line(part))


def part_lines(music: stream.Stream) -> list[list[Event]]:
    """Each part's line (`part_line`) of the music as it sounds, in score order; a stream without parts is one."""
    music = sounding(music)
    return [part_line(part) for part in list(music.parts) or [music]]


def _line(part: stream.Stream) -> list[Event]:
    events: list[Event] = []
    beats: dict[tuple[int, Offset], float] = {}
    bar_lengths: dict[int, Offset] = {}  # by meter: music21 builds a meter's bar duration anew on every read
    tie_open = False
    for start, within, element, measure, in_force in _elements(part):
        length = opFrac(element.quarterLength)
        if length == 0:  # grace notes take no time
            continue
        end = opFrac(start + length)
        if element.isRest or not element.pitches:  # unpitched percussion is silence to a line of pitches
            top, ps = None, None
        else:
            top = element.pitch if isinstance(element, note.Note) else max(element.pitches, key=lambda p: p.ps)
            ps = top.ps
        tie = getattr(element, "tie", None)
        previous = events[-1] if events else None
        if previous is not None and previous.offset == start:
            # Notes together in one part (two voices, a divisi): the line is the upper one.
            if ps is None or (previous.ps is not None and previous.ps >= ps):
                continue
            events.pop()
            previous = events[-1] if events else None
        if tie_open and previous is not None and ps is not None and previous.ps == ps and previous.end == start:
            previous.end = end
        else:
            if previous is not None and previous.end > start:
                previous.end = start
            if measure is None:
                number, in_measure = element.measureNumber, start
            else:
                number = measure.number
                # From the measure's own offsets, not `measure.offset` (its offset in whichever stream is its
                # active site, which another thread's music21 call on the shared score can change).
                in_measure = opFrac(within + (measure.paddingLeft or 0))
                if in_force is not None:
                    bar = bar_lengths.get(id(in_force))
                    if bar is None:
                        bar = bar_lengths[id(in_force)] = in_force.barDuration.quarterLength
                    if in_measure >= bar:
                        in_force = None  # a bar longer than its meter: let music21 work the beat out
            events.append(Event(start, end, top, element, number, in_force, in_measure, beats, ps))
        tie_open = tie is not None and tie.type in ("start", "continue")
    return events


def _part_ref(index: int, label: str) -> dict[str, Any]:
    return {"part": index, "part_label": label}


def _where(slice_: tuple[Event, Event], at: Offset) -> dict[str, Any]:
    """Measure and beat of the onset `at`, read from whichever part's note starts there."""
    upper, lower = slice_
    element = upper if upper.offset == at else lower
    return {"measure": element.measure, "beat": element.beat}


def _slices(upper: list[Event], lower: list[Event]) -> list[tuple[Offset, Event, Event] | None]:
    """At every onset of either part, the events of both parts sounding then; None where either rests or is silent."""
    onsets = sorted({e.offset for e in upper} | {e.offset for e in lower})
    slices: list[tuple[Offset, Event, Event] | None] = []
    i = j = 0
    last_upper, last_lower = len(upper), len(lower)
    for at in onsets:
        while i < last_upper and upper[i].end <= at:
            i += 1
        while j < last_lower and lower[j].end <= at:
            j += 1
        a = upper[i] if i < last_upper and upper[i].offset <= at else None
        b = lower[j] if j < last_lower and lower[j].offset <= at else None
        if a is None or b is None or a.ps is None or b.ps is None:
            slices.append(None)
        else:
            slices.append((at, a, b))
    return slices


def _is_octave(a: Event, b: Event) -> bool:
    """A perfect unison or octave (compound or not), as spelled: C4/C5 yes, C4/B#4 no. Notes only."""
    return a.ps % 12 == b.ps % 12 and a.spelling == b.spelling  # type: ignore[operator]


def _perfect(a0: Event, b0: Event, a1: Event, b1: Event) -> str | None:
    """'parallel fifths' or 'parallel octaves' when both voices (a above b) move the same way from one perfect fifth
    (octave, unison; compound or not) into another. Notes only."""
    motion_a, motion_b = a1.ps - a0.ps, b1.ps - b0.ps  # type: ignore[operator]
    if motion_a == 0 or motion_b == 0 or (motion_a > 0) != (motion_b > 0):
        return None
    first, second = (a0.ps - b0.ps) % 12, (a1.ps - b1.ps) % 12  # type: ignore[operator]
    if first == second == 0:
        return "parallel octaves" if _is_octave(a0, b0) and _is_octave(a1, b1) else None
    if first == second == 7 or first == second == 5:  # 5: the upper part crossed below
        # Only a spelled perfect fifth counts (not a diminished sixth).
        return "parallel fifths" if _spelled_fifth(a0, b0) and _spelled_fifth(a1, b1) else None
    return None


def _spelled_fifth(a: Event, b: Event) -> bool:
    """Whether two notes a fifth apart in semitones (7 or 5 mod 12, either above) are a perfect fifth as spelled,
    compound or not: music21's `Interval(noteStart=b.pitch, noteEnd=a.pitch).semiSimpleName == "P5"`, read from
    the letters and the semitones instead of building the interval (tests/tools/correctness/
    test_music21_equivalence.py pins that they agree). A fifth's spellings span fewer than 12 semitones, so one
    that is a fifth by its letters and 7 semitones mod 12 is perfect."""
    return abs(a.letter_position - b.letter_position) % 7 == 4 and abs(a.ps - b.ps) % 12 == 7  # type: ignore[operator]


def _pair(
    upper_ref: dict[str, Any], lower_ref: dict[str, Any], upper: list[Event], lower: list[Event], neighbours: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Parallels, doubling passages and (for neighbouring parts) crossings between two parts."""
    parallels: list[tuple[Offset, dict[str, Any]]] = []
    crossings: list[dict[str, Any]] = []
    doublings: list[dict[str, Any]] = []
    # Consecutive slices in octaves/unison, with the parallel octaves among them, until the run ends.
    run: list[tuple[Offset, Event, Event]] = []
    run_parallels: list[tuple[Offset, dict[str, Any]]] = []

    def close_run() -> None:
        if len(run) >= DOUBLING_MIN_NOTES and run_parallels:
            first, last = run[0], run[-1]
            doublings.append(
                {
                    "upper": upper_ref,
                    "lower": lower_ref,
                    "interval": "unison" if first[1].ps == first[2].ps else "octave",
                    "start": _where((first[1], first[2]), first[0]),
                    "end": _where((last[1], last[2]), last[0]),
                    "notes": len(run),
                    "parallel_octaves": len(run_parallels),
                }
            )
        elif len(run) < DOUBLING_MIN_NOTES:
            parallels.extend(run_parallels)
        run.clear()
        run_parallels.clear()

    previous: tuple[Event, Event] | None = None
    crossed = False
    for slice_ in _slices(upper, lower):
        if slice_ is None:
            close_run()
            previous, crossed = None, False
            continue
        at, a, b = slice_
        octave = _is_octave(a, b)
        if not octave and run:  # a run in octaves or unison ends here
            close_run()
        if previous is not None:
            kind = _perfect(previous[0], previous[1], a, b)
            if kind:
                finding = {
                    "type": kind,
                    "upper": upper_ref,
                    "lower": lower_ref,
                    **_where((a, b), at),
                    "from": {"upper": previous[0].name, "lower": previous[1].name},
                    "to": {"upper": a.name, "lower": b.name},
                }
                (run_parallels if kind == "parallel octaves" else parallels).append((at, finding))
        if octave:
            run.append(slice_)
        below = a.ps < b.ps  # type: ignore[operator]
        # Crossings only between neighbouring voices: soprano below tenor is already alto-crossing somewhere.
        if neighbours and below and not crossed:
            crossings.append(
                {
                    "upper": upper_ref,
                    "lower": lower_ref,
                    **_where((a, b), at),
                    "pitches": {"upper": a.name, "lower": b.name},
                    "detail": f"{upper_ref['part_label']} ({a.name}) goes below {lower_ref['part_label']} ({b.name})",
                }
            )
        crossed = below
        previous = (a, b)
    close_run()
    parallels.sort(key=lambda item: item[0])
    return [finding for _, finding in parallels], doublings, crossings


def voice_leading_analysis(music: stream.Score) -> dict[str, Any]:
    """Parallel fifths, parallel octaves (and unisons), deliberate doublings and voice crossings between every pair
    of parts; parts as `{"part": index, "part_label": label}`, pitches spelled (`Bb4`), printed measure numbers.
    Every part is read as it sounds (apps.tools.services.derived.sounding): a Bb clarinet's written D4 is a C4."""
    music = sounding(music)
    _require_notes(music)
    refs = [_part_ref(i, label) for i, label in enumerate(part_labels(music))]
    lines = part_lines(music)
    parallels: list[dict[str, Any]] = []
    doublings: list[dict[str, Any]] = []
    crossings: list[dict[str, Any]] = []
    for upper, lower in itertools.combinations(range(len(lines)), 2):  # every pair, upper part first in score order
        found, doubled, crossed = _pair(refs[upper], refs[lower], lines[upper], lines[lower], lower == upper + 1)
        parallels += found
        doublings += doubled
        crossings += crossed
    fifths = [p for p in parallels if p["type"] == "parallel fifths"]
    octaves = [p for p in parallels if p["type"] == "parallel octaves"]
    return {
        "parts": refs,
        "parallel_fifths": fifths,
        "parallel_octaves": octaves,
        "doublings": doublings,
        "voice_crossings": crossings,
        "summary": {
            "parallel_fifths": len(fifths),
            "parallel_octaves": len(octaves),
            "doublings": len(doublings),
            "voice_crossings": len(crossings),
        },
    }
