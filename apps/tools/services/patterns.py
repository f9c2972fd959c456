"""Repeated motifs and phrase structure. Pure functions from a music21 stream to a dict; the stream is not changed.

Melodic motifs are matched by their scale steps (the diatonic interval between neighbours, from the spelled note
names), so a tonal sequence (C D E C, D E F D: the same steps a step higher, with other semitones) is one motif; each
motif says whether its repeats are exact (the same semitones, perhaps transposed) or a diatonic sequence."""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from music21 import stream

from apps.core.errors import AnalysisError
from apps.tools.services.cadences import has_fermata, phrase_end_indexes
from apps.tools.services.derived import derived, sounding
from apps.tools.services.summary import part_labels
from apps.tools.services.voiceleading import Event, part_line

# Motifs longer than this are reported by their repeated sub-motifs; real repeats rarely run longer note for note.
MAX_MOTIF_LENGTH = 12
MAX_PATTERNS = 15
MAX_LOCATIONS = 10


@dataclass(frozen=True)
class _Note:
    part: int
    part_label: str
    event: Event
    degree: int  # diatonic position (letter name and octave): differences are scale steps
    midi: float


Window = tuple[int, int, int]  # (segment index, start, length)


def _segments(part: stream.Stream, index: int, label: str) -> list[list[_Note]]:
    """The part's notes, ties merged, cut into runs at every rest (a motif does not continue across silence); once
    per parsed score (apps.tools.services.derived)."""
    return derived(part, ("segments", index), lambda: _runs(part, index, label))


def _runs(part: stream.Stream, index: int, label: str) -> list[list[_Note]]:
    runs: list[list[_Note]] = [[]]
    for event in part_line(part):
        if event.pitch is None:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append(_Note(index, label, event, event.letter_position, event.ps))
    return [run for run in runs if run]


def _where(window: list[_Note]) -> dict[str, Any]:
    first = window[0]
    return {
        "part": first.part,
        "part_label": first.part_label,
        "measure": first.event.measure,
        "beat": first.event.beat,
        "notes": [n.event.name for n in window],
    }


def _repeats(
    segments: list[list[_Note]], min_length: int, values: list[list[Any]], trim: int
) -> dict[tuple[Any, ...], list[Window]]:
    """Every window of `min_length`..MAX_MOTIF_LENGTH notes, grouped by `(length, signature)`, kept when it occurs
    at least twice without overlapping itself (of A A A A only windows 1-2 and 3-4 count for "A A"). The signature
    of the window of `length` notes from `start` is `values[segment][start : start + length - trim]`: the values
    are worked out once per note, not once per window."""
    # Length by length, and only from windows whose one-note-shorter start occurs twice or more: a window that
    # occurs once has no longer window starting with it that occurs twice, and most windows occur once. A window
    # is grouped by its one-note-shorter window's group and the value it adds, which is its signature without
    # building it: the signature tuple is made once per repeating group.
    #
    # Until the repeating windows are named as `Window`s at the end, a window is the position of its first note
    # among the notes of all runs one after another, and a value its number in order of first appearance: a
    # grouping key is then one integer, not a tuple.
    flat: list[Any] = []  # each run's values, padded to its number of notes
    left: list[int] = []  # the notes from each position to the end of its run
    runs_at: list[tuple[int, int]] = []  # the (run, start) of each position
    for number, run in enumerate(segments):
        flat += values[number]
        flat += [None] * (len(run) - len(values[number]))
        left += range(len(run), 0, -1)
        runs_at += ((number, start) for start in range(len(run)))
    numbering: dict[Any, int] = {}
    numbered = [numbering.setdefault(value, len(numbering)) for value in flat]
    kinds = len(numbering)
    found: dict[tuple[Any, ...], list[int]] = {}
    starts = [at for at, notes in enumerate(left) if notes >= min_length]
    group_of: dict[int, int] = {}  # position -> its window's group at the previous length
    for length in range(min_length, MAX_MOTIF_LENGTH + 1):
        windows_of: dict[Any, list[int]] = {}
        last = length - 1 - trim  # the index, from the window's start, of the value this length adds
        for at in starts:
            if left[at] >= length:
                if length == min_length:
                    key: Any = tuple(numbered[at : at + length - trim])
                else:
                    key = group_of[at] * kinds + numbered[at + last]
                windows = windows_of.get(key)
                if windows is None:
                    windows_of[key] = [at]
                else:
                    windows.append(at)
        group_of = {}
        groups = 0
        for windows in windows_of.values():
            if len(windows) >= 2:
                first = windows[0]
                found[(length, tuple(flat[first : first + length - trim]))] = windows
                for at in windows:
                    group_of[at] = groups
                groups += 1
        # In run order, as every window list is: the overlap test below and the ranking's ties depend on it.
        starts = sorted(group_of)
        if not starts:
            break
    repeated: dict[tuple[Any, ...], list[Window]] = {}
    for sig, windows in found.items():
        length = sig[0]
        kept = [windows[0]]
        for at in windows[1:]:  # in run order, so an overlap is always with the last one kept
            if kept[-1] + length <= at or runs_at[kept[-1]][0] != runs_at[at][0]:
                kept.append(at)
        if len(kept) >= 2:
            repeated[sig] = [(*runs_at[at], length) for at in kept]
    return repeated


def _maximal(repeated: dict[tuple[Any, ...], list[Window]]) -> list[tuple[tuple[Any, ...], list[Window]]]:
    """Drop a motif when a one-note-longer motif repeats as often: it is only part of that longer one."""
    # The most occurrences of a one-note-longer motif that starts or ends with each motif: one pass, not a search.
    extended: dict[tuple[Any, ...], int] = defaultdict(int)
    for (length, body), windows in repeated.items():
        for part in (body[:-1], body[1:]):
            extended[(length - 1, part)] = max(extended[(length - 1, part)], len(windows))
    return [(sig, windows) for sig, windows in repeated.items() if extended.get(sig, 0) < len(windows)]


def _notes(segments: list[list[_Note]], window: Window) -> list[_Note]:
    number, start, length = window
    return segments[number][start : start + length]


def _melodic(segments: list[list[_Note]], min_length: int) -> list[dict[str, Any]]:
    # Scale steps between neighbours: the same motif transposed, or sequenced in the key, has the same signature.
    steps = [[b.degree - a.degree for a, b in itertools.pairwise(run)] for run in segments]
    repeated = {
        sig: windows for sig, windows in _repeats(segments, min_length, steps, 1).items() if any(sig[1])
    }  # a repeated single pitch is not a motif
    ranked = sorted(_maximal(repeated), key=lambda item: (-len(item[1]) * item[0][0], -item[0][0]))
    patterns = []
    for (length, body), windows in ranked[:MAX_PATTERNS]:
        occurrences = [_notes(segments, w) for w in windows]
        semitones = [tuple(int(b.midi - a.midi) for a, b in itertools.pairwise(notes)) for notes in occurrences]
        patterns.append(
            {
                "length": length,
                "steps": list(body),
                "intervals": list(semitones[0]),
                "kind": "exact" if len(set(semitones)) == 1 else "diatonic sequence",
                "occurrences": len(windows),
                "transposed": len({notes[0].midi for notes in occurrences}) > 1,
                "locations": [
                    {**_where(notes), "intervals": list(semis)}
                    for notes, semis in zip(occurrences[:MAX_LOCATIONS], semitones, strict=False)
                ],
            }
        )
    return patterns


def _rhythmic(segments: list[list[_Note]], min_length: int, uniform: bool) -> list[dict[str, Any]]:
    durations = [[float(n.event.duration) for n in run] for run in segments]
    # A run of one repeated value (quarter after quarter) is everywhere and says nothing; left out unless asked.
    repeated = {
        sig: windows
        for sig, windows in _repeats(segments, min_length, durations, 0).items()
        if uniform or len(set(sig[1])) > 1
    }
    ranked = sorted(
        _maximal(repeated),
        key=lambda item: (len(set(item[0][1])) == 1, -len(item[1]) * item[0][0], -item[0][0]),
    )
    return [
        {
            "length": length,
            "durations": list(body),
            "occurrences": len(windows),
            "locations": [_where(_notes(segments, w)) for w in windows[:MAX_LOCATIONS]],
        }
        for (length, body), windows in ranked[:MAX_PATTERNS]
    ]


def _phrases(music: stream.Score, label: str) -> list[dict[str, Any]]:
    """The top part's phrases (labelled `label`), ended by fermatas or rests."""
    top = music.parts[0] if music.parts else music
    line = part_line(top)
    phrases: list[dict[str, Any]] = []
    start = 0
    for end in phrase_end_indexes([None if e.pitch is None else has_fermata(e.element) for e in line]):
        members = [e for e in line[start : end + 1] if e.pitch is not None]
        start = end + 1
        if not members:
            continue
        first, last = members[0], members[-1]
        phrases.append(
            {
                "part": 0,
                "part_label": label,
                "start": {"measure": first.measure, "beat": first.beat},
                "end": {"measure": last.measure, "beat": last.beat},
                "notes": len(members),
                "quarter_length": float(last.end - first.offset),
                "final_pitch": last.name,
            }
        )
    return phrases


def pattern_recognition(
    music: stream.Score, *, pattern_type: str = "both", min_length: int = 3, uniform_rhythms: bool = False
) -> dict[str, Any]:
    """Repeated melodic motifs (by scale steps: exact repeats, transpositions and diatonic sequences) and rhythmic
    patterns in every part with their locations (part index and label, printed measure, beat), and the phrase
    structure of the top part. Rhythms of a single repeated duration are left out unless `uniform_rhythms`. The
    music is read as it sounds (apps.tools.services.derived.sounding), as the voice-leading tool reads it."""
    if pattern_type not in ("melodic", "rhythmic", "both"):
        raise AnalysisError(f"Unknown pattern_type {pattern_type!r}; use melodic, rhythmic or both.")
    music = sounding(music)
    parts = list(music.parts) or [music]
    labels = part_labels(music)
    segments = [run for i, part in enumerate(parts) for run in _segments(part, i, labels[i])]
    if not segments:
        raise AnalysisError("The score has no notes to look for patterns in.")
    result: dict[str, Any] = {"pattern_type": pattern_type, "min_length": min_length}
    if pattern_type in ("melodic", "both"):
        result["melodic_patterns"] = _melodic(segments, min_length)
    if pattern_type in ("rhythmic", "both"):
        result["rhythmic_patterns"] = _rhythmic(segments, min_length, uniform_rhythms)
    phrases = _phrases(music, labels[0])
    result["phrases"] = phrases
    result["phrase_structure"] = {
        "count": len(phrases),
        "lengths_in_quarters": [p["quarter_length"] for p in phrases],
    }
    return result
