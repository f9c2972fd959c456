"""What a score holds, counted over the whole score (every part, every measure, the pickup included)."""

from __future__ import annotations

from typing import Any

from music21 import key, meter, stream


def part_label(part: stream.Part, index: int) -> str:
    return part.partName or (part.id if isinstance(part.id, str) else "") or f"Part {index + 1}"


def score_summary(score: stream.Score) -> dict[str, Any]:
    """Parts with instruments, measures, notes, pitch range, signatures and length of a parsed score."""
    parts = list(score.parts) or [score]
    part_rows = []
    for index, part in enumerate(parts):
        instrument = part.getInstrument(returnDefault=False)
        part_rows.append(
            {
                "name": part_label(part, index),
                "instrument": (instrument.instrumentName or instrument.bestName()) if instrument else None,
                "measures": len(part.getElementsByClass(stream.Measure)),
                "notes": _note_count(part),
            }
        )
    pitches = [p for n in score.recurse().notes for p in n.pitches]
    lowest = min(pitches, key=lambda p: p.ps) if pitches else None
    highest = max(pitches, key=lambda p: p.ps) if pitches else None
    return {
        "parts": part_rows,
        "parts_count": len(part_rows),
        "measures": max((row["measures"] for row in part_rows), default=0),
        "notes": sum(row["notes"] for row in part_rows),
        "lowest_pitch": lowest.nameWithOctave if lowest else "",
        "highest_pitch": highest.nameWithOctave if highest else "",
        "key_signatures": _key_signatures(score),
        "time_signatures": _distinct(ts.ratioString for ts in score.recurse().getElementsByClass(meter.TimeSignature)),
        "duration_quarters": float(score.highestTime),
    }


def _note_count(part: stream.Stream) -> int:
    # A chord counts as one note event, as music21's `.notes` does; tied continuations count as written.
    return len(part.recurse().notes)


def _key_signatures(score: stream.Score) -> list[str]:
    names = []
    for signature in score.recurse().getElementsByClass(key.KeySignature):
        sharps = signature.sharps
        if sharps == 0:
            names.append("no sharps or flats")
        else:
            count = abs(sharps)
            names.append(f"{count} {'sharp' if sharps > 0 else 'flat'}{'s' if count > 1 else ''}")
    return _distinct(names)


def _distinct(values: Any) -> list[str]:
    return list(dict.fromkeys(values))
