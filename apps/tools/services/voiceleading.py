"""Voice leading between every pair of parts. Pure functions from a music21 stream to a dict.

The stream comes from the shared parsed-score cache, so nothing here may change it."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from music21 import interval, pitch, stream

from apps.tools.services.keys import _require_notes, _round


def _pitch(name: str) -> pitch.Pitch:
    return pitch.Pitch(name)


# --- Voice leading ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Event:
    offset: float
    end: float
    midi: float | None  # None for a rest
    name: str | None
    measure: int | None
    beat: float


def _events(part: stream.Part) -> list[_Event]:
    """The part as a sequence of sounding pitches (the top note of a chord), tied notes merged."""
    events: list[_Event] = []
    for element in part.stripTies().flatten().notesAndRests:
        start = float(element.offset)
        end = start + float(element.quarterLength)
        if element.isRest:
            midi, name = None, None
        else:
            top = max(element.pitches, key=lambda p: p.ps)
            midi, name = top.ps, top.nameWithOctave
        events.append(_Event(start, end, midi, name, element.measureNumber, _round(float(element.beat)) or 1.0))
    return events


def _sounding(events: list[_Event], at: float) -> _Event | None:
    for event in events:
        if event.offset <= at < event.end:
            return event
    return None


def voice_leading_analysis(music: stream.Score) -> dict[str, Any]:
    """Parallel fifths, parallel octaves (and unisons) and voice crossings between every pair of parts."""
    _require_notes(music)
    parts = list(music.parts) or [music]
    names = [p.partName or p.id or f"Part {i + 1}" for i, p in enumerate(parts)]
    voices = [_events(p) for p in parts]
    parallels: list[dict[str, Any]] = []
    crossings: list[dict[str, Any]] = []
    for (upper, upper_name, upper_events), (lower, lower_name, lower_events) in itertools.combinations(
        zip(range(len(parts)), names, voices, strict=True), 2
    ):  # every pair, upper part first in score order
        onsets = sorted({e.offset for e in upper_events} | {e.offset for e in lower_events})
        previous: tuple[_Event, _Event] | None = None
        crossed = False
        for at in onsets:
            a, b = _sounding(upper_events, at), _sounding(lower_events, at)
            if a is None or b is None or a.midi is None or b.midi is None:
                previous, crossed = None, False
                continue
            where = a if a.offset == at else b
            if previous is not None:
                kind = _parallel(previous, (a, b))
                if kind:
                    parallels.append(
                        {
                            "type": kind,
                            "parts": [upper_name, lower_name],
                            "measure": where.measure,
                            "beat": where.beat,
                            "from": [previous[0].name, previous[1].name],
                            "to": [a.name, b.name],
                        }
                    )
            # Crossings only between neighbouring voices: soprano below tenor is already alto-crossing somewhere.
            if lower == upper + 1 and a.midi < b.midi and not crossed:
                crossings.append(
                    {
                        "parts": [upper_name, lower_name],
                        "measure": where.measure,
                        "beat": where.beat,
                        "pitches": [a.name, b.name],
                        "detail": f"{upper_name} ({a.name}) goes below {lower_name} ({b.name})",
                    }
                )
            crossed = a.midi < b.midi
            previous = (a, b)
    fifths = [p for p in parallels if p["type"] == "parallel fifths"]
    octaves = [p for p in parallels if p["type"] != "parallel fifths"]
    return {
        "parts": names,
        "parallel_fifths": fifths,
        "parallel_octaves": octaves,
        "voice_crossings": crossings,
        "summary": {
            "parallel_fifths": len(fifths),
            "parallel_octaves": len(octaves),
            "voice_crossings": len(crossings),
        },
    }


def _parallel(before: tuple[_Event, _Event], after: tuple[_Event, _Event]) -> str | None:
    """'parallel fifths' or 'parallel octaves' when both voices move the same way into the same perfect interval."""
    (a0, b0), (a1, b1) = before, after
    motion_a, motion_b = (a1.midi or 0) - (a0.midi or 0), (b1.midi or 0) - (b0.midi or 0)  # callers skip rests
    if motion_a == 0 or motion_b == 0 or (motion_a > 0) != (motion_b > 0):
        return None
    first = interval.Interval(noteStart=_pitch(b0.name or ""), noteEnd=_pitch(a0.name or ""))
    second = interval.Interval(noteStart=_pitch(b1.name or ""), noteEnd=_pitch(a1.name or ""))
    simple = (first.semiSimpleName, second.semiSimpleName)
    if simple == ("P5", "P5"):
        return "parallel fifths"
    if simple[0] in ("P1", "P8") and simple[1] in ("P1", "P8"):
        return "parallel octaves"
    return None
