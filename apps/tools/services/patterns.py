"""Repeated motifs and phrase structure. Pure functions from a music21 stream to a dict; the stream is not changed."""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from music21 import stream

from apps.core.errors import AnalysisError
from apps.tools.services.harmony import phrase_end_offsets

# Motifs longer than this are reported by their repeated sub-motifs; real repeats rarely run longer note for note.
MAX_MOTIF_LENGTH = 12
MAX_PATTERNS = 15
MAX_LOCATIONS = 10


@dataclass(frozen=True)
class _Note:
    part: str
    midi: float
    name: str
    duration: float
    measure: int | None
    beat: float


def _segments(part: stream.Part, part_name: str) -> list[list[_Note]]:
    """The part's notes, ties merged, cut into runs at every rest (a motif does not continue across silence)."""
    runs: list[list[_Note]] = [[]]
    for element in part.stripTies().flatten().notesAndRests:
        if element.isRest:
            if runs[-1]:
                runs.append([])
            continue
        top = max(element.pitches, key=lambda p: p.ps)
        runs[-1].append(
            _Note(
                part_name,
                top.ps,
                top.nameWithOctave,
                float(element.quarterLength),
                element.measureNumber,
                round(float(element.beat), 3),
            )
        )
    return [run for run in runs if run]


def _where(window: list[_Note]) -> dict[str, Any]:
    return {
        "part": window[0].part,
        "measure": window[0].measure,
        "beat": window[0].beat,
        "notes": [n.name for n in window],
    }


def _repeats(segments: list[list[_Note]], min_length: int, signature: Any) -> dict[tuple[Any, ...], list[list[_Note]]]:
    """Every window of `min_length`..MAX_MOTIF_LENGTH notes, grouped by `signature(window)`, kept when repeated."""
    found: dict[tuple[Any, ...], list[list[_Note]]] = defaultdict(list)
    for run in segments:
        for length in range(min_length, min(MAX_MOTIF_LENGTH, len(run)) + 1):
            for start in range(len(run) - length + 1):
                window = run[start : start + length]
                found[(length, signature(window))].append(window)
    return {sig: windows for sig, windows in found.items() if len(windows) >= 2}


def _maximal(repeated: dict[tuple[Any, ...], list[list[_Note]]]) -> list[tuple[tuple[Any, ...], list[list[_Note]]]]:
    """Drop a motif when a one-note-longer motif repeats as often: it is only part of that longer one."""
    counts = {sig: len(windows) for sig, windows in repeated.items()}
    kept = []
    for (length, body), windows in repeated.items():
        longer = [
            count
            for (other_length, other_body), count in counts.items()
            if other_length == length + 1 and (other_body[: len(body)] == body or other_body[-len(body) :] == body)
        ]
        if not any(count >= len(windows) for count in longer):
            kept.append(((length, body), windows))
    return kept


def _melodic(segments: list[list[_Note]], min_length: int) -> list[dict[str, Any]]:
    def intervals(window: list[_Note]) -> tuple[float, ...]:
        # Semitone steps between neighbours: the same motif transposed has the same signature.
        return tuple(int(b.midi - a.midi) for a, b in itertools.pairwise(window))

    repeated = {
        sig: windows for sig, windows in _repeats(segments, min_length, intervals).items() if any(sig[1])
    }  # a repeated single pitch is not a motif
    ranked = sorted(_maximal(repeated), key=lambda item: (-len(item[1]) * item[0][0], -item[0][0]))
    return [
        {
            "length": length,
            "intervals": list(body),
            "occurrences": len(windows),
            "transposed": len({w[0].midi for w in windows}) > 1,
            "locations": [_where(w) for w in windows[:MAX_LOCATIONS]],
        }
        for (length, body), windows in ranked[:MAX_PATTERNS]
    ]


def _rhythmic(segments: list[list[_Note]], min_length: int) -> list[dict[str, Any]]:
    def durations(window: list[_Note]) -> tuple[float, ...]:
        return tuple(n.duration for n in window)

    repeated = _repeats(segments, min_length, durations)
    # Patterns of one repeated value (four quarters) are everywhere; rank the ones with a real shape first.
    ranked = sorted(
        _maximal(repeated),
        key=lambda item: (len(set(item[0][1])) == 1, -len(item[1]) * item[0][0], -item[0][0]),
    )
    return [
        {
            "length": length,
            "durations": list(body),
            "occurrences": len(windows),
            "locations": [_where(w) for w in windows[:MAX_LOCATIONS]],
        }
        for (length, body), windows in ranked[:MAX_PATTERNS]
    ]


def _phrases(music: stream.Score) -> list[dict[str, Any]]:
    """The top part's phrases, ended by fermatas or rests (see harmony.phrase_end_offsets)."""
    top = music.parts[0] if music.parts else music
    notes = list(top.stripTies().flatten().notes)
    phrases: list[dict[str, Any]] = []
    start = 0
    for end_offset in phrase_end_offsets(music):
        members = [n for n in notes[start:] if float(n.offset) <= end_offset]
        if not members:
            continue
        first, last = members[0], members[-1]
        phrases.append(
            {
                "start": {"measure": first.measureNumber, "beat": round(float(first.beat), 3)},
                "end": {"measure": last.measureNumber, "beat": round(float(last.beat), 3)},
                "notes": len(members),
                "quarter_length": float(last.offset + last.quarterLength - first.offset),
                "final_pitch": max(last.pitches, key=lambda p: p.ps).nameWithOctave,
            }
        )
        start += len(members)
    return phrases


def pattern_recognition(music: stream.Score, *, pattern_type: str = "both", min_length: int = 3) -> dict[str, Any]:
    """Repeated melodic motifs (transposition-invariant) and rhythmic patterns in every part with their locations,
    and the phrase structure of the top part."""
    if pattern_type not in ("melodic", "rhythmic", "both"):
        raise AnalysisError(f"Unknown pattern_type {pattern_type!r}; use melodic, rhythmic or both.")
    parts = list(music.parts) or [music]
    segments = [
        run for i, part in enumerate(parts) for run in _segments(part, part.partName or part.id or f"Part {i + 1}")
    ]
    if not segments:
        raise AnalysisError("The score has no notes to look for patterns in.")
    result: dict[str, Any] = {"pattern_type": pattern_type, "min_length": min_length}
    if pattern_type in ("melodic", "both"):
        result["melodic_patterns"] = _melodic(segments, min_length)
    if pattern_type in ("rhythmic", "both"):
        result["rhythmic_patterns"] = _rhythmic(segments, min_length)
    phrases = _phrases(music)
    result["phrases"] = phrases
    result["phrase_structure"] = {
        "count": len(phrases),
        "lengths_in_quarters": [p["quarter_length"] for p in phrases],
    }
    return result
