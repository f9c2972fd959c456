"""Bars that do not fit their meter, and music with no meter at all: answered with beats as music21 counts them,
never a failure and never a beat that is not a number (which is not JSON)."""

from __future__ import annotations

import json
from typing import Any

from music21 import meter, note, stream

from apps.tools.services.harmony import chord_analysis, harmony_analysis
from apps.tools.services.voiceleading import voice_leading_analysis

# No M: field: music21 reads it with no time signature.
UNMETERED_ABC = "X:1\nT:Free\nL:1/4\nK:C\nC D E C | C D E C | E F G2 | E F G2 |]\n"


def _overfull() -> stream.Score:
    """Two parts in 3/4 whose first bar holds four quarter notes in the upper part (a miscounted bar, as in some
    corpus works: weber/concertino_clarinet, schumann_robert/opus41no1/movement1). Four different chords (no
    octave, a lone pitch that has no numeral), so the progression lists all four."""
    score = stream.Score()
    for names in (["C5", "D5", "E5", "F5"], ["A4", "B3", "C4", "A3"]):
        part, bar = stream.Part(), stream.Measure(number=1)
        bar.timeSignature = meter.TimeSignature("3/4")
        for name in names:
            bar.append(note.Note(name))
        part.append(bar)
        score.insert(0, part)
    return score


def test_a_bar_longer_than_its_meter_gets_music21s_beats() -> None:
    score = _overfull()
    expected = [float(c.beat) for c in score.chordify().recurse().notes]
    assert expected == [1.0, 2.0, 3.0, 1.0]  # past the bar's end music21 counts on from its start
    assert [c["beat"] for c in chord_analysis(score)["chords"]] == expected
    assert [c["beat"] for c in harmony_analysis(score)["progression"]] == expected
    assert voice_leading_analysis(score)["summary"]


def test_music_without_a_meter_counts_beats_in_quarter_notes_and_answers_valid_json(alice: Any, call: Any) -> None:
    call(alice, "import_score", score_id="free", source=UNMETERED_ABC, source_type="abc")
    for tool in ("pattern_recognition", "chord_analysis", "harmony_analysis", "voice_leading_analysis"):
        json.dumps(call(alice, tool, score_id="free"), allow_nan=False)  # NaN is not JSON
    cadences = call(alice, "harmony_analysis", score_id="free", analysis_type="cadences")
    json.dumps(cadences, allow_nan=False)
    patterns = call(alice, "pattern_recognition", score_id="free")["melodic_patterns"]
    assert {(where["measure"], where["beat"]) for p in patterns for where in p["locations"]} >= {(1, 1.0), (2, 1.0)}
