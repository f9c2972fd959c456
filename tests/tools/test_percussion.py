"""Unpitched percussion (a drum part of MusicXML, a MIDI drum track) is music without pitches: beside a melody it is
silence to the tools that follow lines of pitches, and alone it is nothing to analyse, said so, never a failure of
the server (internal_error)."""

from __future__ import annotations

from typing import Any

import pytest
from music21 import instrument, meter, note, stream

from apps.core.errors import AnalysisError
from apps.tools.services.render import musicxml_text

MUSIC_TOOLS = (
    "key_analysis",
    "chord_analysis",
    "harmony_analysis",
    "voice_leading_analysis",
    "pattern_recognition",
    "harmonize_melody",
    "generate_counterpoint",
    "imitate_style",
)


def _score(*, melody: bool) -> str:
    """Two bars of a snare drum in 4/4, under a violin's scale when `melody`, as MusicXML."""
    score = stream.Score()
    if melody:
        violin = stream.Part([instrument.Violin()])
        for number, names in ((1, "C5 D5 E5 F5"), (2, "G5 A5 B5 C6")):
            bar = stream.Measure(number=number)
            bar.append([note.Note(name) for name in names.split()])
            violin.append(bar)
        violin.getElementsByClass(stream.Measure)[0].timeSignature = meter.TimeSignature("4/4")
        score.insert(0, violin)
    drum = stream.Part([instrument.SnareDrum()])
    for number in (1, 2):
        bar = stream.Measure(number=number)
        for _ in range(4):
            hit = note.Unpitched()
            hit.displayStep, hit.displayOctave = "C", 5
            bar.append(hit)
        drum.append(bar)
    drum.getElementsByClass(stream.Measure)[0].timeSignature = meter.TimeSignature("4/4")
    score.insert(0, drum)
    return musicxml_text(score)


def test_a_drum_part_beside_a_melody_is_silence_to_every_tool(alice: Any, call: Any) -> None:
    call(alice, "import_score", score_id="band", source=_score(melody=True), source_type="musicxml")
    for tool in MUSIC_TOOLS:
        assert call(alice, tool, score_id="band")["status"] == "success", tool
    lines = call(alice, "voice_leading_analysis", score_id="band")
    assert not lines["parallel_fifths"] and not lines["parallel_octaves"]


@pytest.mark.parametrize("tool", MUSIC_TOOLS)
def test_a_drum_part_alone_has_nothing_to_analyse_and_is_told_so(alice: Any, call: Any, tool: str) -> None:
    call(alice, "import_score", score_id="drums", source=_score(melody=False), source_type="musicxml")
    with pytest.raises(AnalysisError, match=r"notes|melody"):
        call(alice, tool, score_id="drums")
