"""Round trips through the service's own exports, on real works of music21's corpus: what a format promises to
carry comes back (parts, notes, pitches, bars), and what it cannot carry is said.

The expected answers come from music21 itself: `corpus.parse` of the same work, run here, not through the service.
MusicXML and compressed MusicXML promise everything: every part (each staff of a piano is a part), every note with
its spelling, every bar. MIDI promises the performance only: the repeats played out, the pitches and onsets of every
note; not bar lines, pickups, spelling or ties (a note crossing a bar line it did not cross before is split).
"""

from __future__ import annotations

import base64
import copy
import functools
from collections import Counter
from typing import Any

import pytest
from music21 import corpus, stream

from apps.core.errors import UnprocessableScore
from apps.tools.services.export import export_score
from apps.tools.services.parsing import parse_stored

# (corpus path, what it is). Piano and song scores are the ones whose staves the MusicXML import used to lose.
WORKS = {
    "chorale": ("bach/bwv66.6", "Bach chorale, four voices, pickup bar"),
    "chorale_triple": ("bach/bwv57.8", "Bach chorale in 3/4, pickup bar"),
    "chorale_krn": ("bach/bwv277.krn", "Bach chorale from Humdrum"),
    "polonaise": ("schumann_clara/polonaise_op1n1", "Clara Schumann, piano on two staves, repeats"),
    "rag": ("joplin/maple_leaf_rag", "Joplin, piano on two staves"),
    "song": ("schumann_robert/dichterliebe_no2.xml", "Schumann song: voice and piano (three staves)"),
    "aria": ("handel/rinaldo/Lascia_chio_pianga", "Handel aria: voice and piano"),
    "quartet": ("haydn/opus1no1/movement2", "Haydn string quartet"),
    "mazurka_krn": ("chopin/mazurka06-2.krn", "Chopin mazurka from Humdrum, piano"),
    "reel_abc": ("ryansMammoth/AcaciaReel.abc", "Irish reel from ABC"),
    "reel_open_repeat": ("ryansMammoth/AbithaMugginsFavoriteReel.abc", "ABC reel whose second repeat never ends"),
}


@functools.cache
def original(name: str) -> stream.Score:
    """music21's own reading of the work, parsed once per module (and never changed by a test)."""
    parsed = corpus.parse(WORKS[name][0])
    if isinstance(parsed, stream.Opus):  # a single-tune ABC file is read as an opus of one
        parsed = parsed.scores.first()
    return parsed


def pitches_by_part(score: stream.Score) -> list[Counter[str]]:
    """Each part's sounding notes as spelled pitches with octave, counted (chords give each pitch)."""
    return [Counter(p.nameWithOctave for n in part.recurse().notes for p in n.pitches) for part in score.parts]


def attacks_by_part(score: stream.Score) -> list[Counter[int]]:
    """Each part's struck notes as MIDI numbers: tied continuations are not new notes, spelling is not kept."""
    return [
        Counter(
            p.midi
            for n in part.recurse().notes
            if not (n.tie is not None and n.tie.type in ("stop", "continue"))
            for p in n.pitches
        )
        for part in score.parts
    ]


def measures(score: stream.Score) -> int:
    return max(len(part.getElementsByClass(stream.Measure)) for part in score.parts)


def imported(alice: Any, call: Any, name: str) -> dict[str, Any]:
    return call(alice, "import_score", score_id=name, source=WORKS[name][0], source_type="corpus")


def exported(alice: Any, call: Any, name: str, fmt: str) -> dict[str, Any]:
    return call(alice, "export_score", score_id=name, format=fmt)


@pytest.mark.parametrize("name", ["chorale", "polonaise", "rag", "song", "aria", "mazurka_krn"])
def test_musicxml_export_imports_back_with_every_part_note_and_bar(alice: Any, call: Any, name: str) -> None:
    music = original(name)
    imported(alice, call, name)
    xml = exported(alice, call, name, "musicxml")

    again = call(alice, "import_score", score_id=f"{name}-again", source=xml["content"], source_type="musicxml")

    assert again["warnings"] == []
    assert again["parts"] == len(music.parts)
    assert again["notes"] == len(music.recurse().notes)
    assert again["measures"] == measures(music)
    assert pitches_by_part(parse_stored("musicxml", text=xml["content"])) == pitches_by_part(music)


@pytest.mark.parametrize("name", ["chorale_triple", "polonaise", "song", "quartet", "reel_abc", "chorale_krn"])
def test_compressed_musicxml_export_imports_back_from_a_file(
    alice: Any, call: Any, settings: Any, tmp_path: Any, name: str
) -> None:
    music = original(name)
    imported(alice, call, name)
    mxl = exported(alice, call, name, "mxl")
    assert mxl["encoding"] == "base64"
    (tmp_path / f"{name}.mxl").write_bytes(base64.b64decode(mxl["content"]))
    settings.SCORE_IMPORT_ROOT = tmp_path

    again = call(alice, "import_score", score_id=f"{name}-mxl", source=f"{name}.mxl", source_type="file")

    assert again["source_format"] == "mxl"
    assert (again["parts"], again["notes"], again["measures"]) == (
        len(music.parts),
        len(music.recurse().notes),
        measures(music),
    )
    assert pitches_by_part(parse_stored("mxl", data=base64.b64decode(mxl["content"]))) == pitches_by_part(music)


@pytest.mark.parametrize("name", ["chorale", "chorale_triple", "quartet", "polonaise"])
def test_midi_export_imports_back_as_the_performance(alice: Any, call: Any, name: str) -> None:
    """One track per part or staff, and every struck note of the performance: the polonaise's repeats are played
    out, so its notes are those of music21's own `expandRepeats` of the score."""
    performance = original(name).expandRepeats()
    imported(alice, call, name)
    midi = exported(alice, call, name, "midi")
    assert any("repeats" in warning for warning in midi["warnings"])

    again = call(alice, "import_score", score_id=f"{name}-midi", source=midi["content"], source_type="midi")

    assert again["parts"] == len(performance.parts)
    assert attacks_by_part(parse_stored("midi", data=base64.b64decode(midi["content"]))) == attacks_by_part(performance)


def test_a_midi_import_says_that_the_pickup_bar_is_not_kept(alice: Any, call: Any) -> None:
    """bwv66.6 opens with a one-beat pickup (bar 0) before nine full bars. MIDI has no bar lines, so music21 bars
    the music from the first note: the pickup is folded into bar 1. The result says so instead of losing it."""
    music = original("chorale")
    assert music.parts[0].getElementsByClass(stream.Measure).first().measureNumber == 0  # the pickup, as printed
    imported(alice, call, "chorale")
    midi = exported(alice, call, "chorale", "midi")

    again = call(alice, "import_score", score_id="chorale-midi", source=midi["content"], source_type="midi")

    assert again["measures"] == measures(music) - 1
    assert any("pickup" in warning and "bar 1" in warning for warning in again["warnings"])


@pytest.mark.parametrize(("name", "bar"), [("reel_open_repeat", "bar 8"), ("mazurka_krn", "bar 0")])
def test_midi_export_of_repeats_music21_cannot_play_out_says_why_and_what_to_try(
    alice: Any, call: Any, name: str, bar: str
) -> None:
    """The reel's second strain opens a repeat at bar 8 that never closes; the mazurka's last strain opens one at
    its bar 0 (Humdrum restarts the numbers after each repeat) that never closes. MusicXML keeps them as written."""
    imported(alice, call, name)

    with pytest.raises(UnprocessableScore) as caught:
        exported(alice, call, name, "midi")

    assert f"start repeat at {bar}" in caught.value.message
    assert "no end repeat" in caught.value.message
    assert "export musicxml" in caught.value.message
    assert caught.value.extra["reason"] == "unexpandable_repeats"
    xml = exported(alice, call, name, "musicxml")
    assert len(parse_stored("musicxml", text=xml["content"]).recurse().notes) == len(original(name).recurse().notes)


def test_midi_export_refuses_parts_whose_repeats_differ_instead_of_putting_them_out_of_step() -> None:
    """The polonaise repeats bars 1-8 and 9-28 in both hands. Without the left hand's second end repeat, playing
    the repeats out would give the right hand 20 more bars than the left: the MIDI would be silently wrong."""
    piece = copy.deepcopy(original("polonaise"))
    left_hand = piece.parts[1]
    left_hand.measure(28).rightBarline = None
    assert export_score(original("polonaise"), fmt="midi")["size_bytes"] > 0  # as written, the repeats agree

    with pytest.raises(UnprocessableScore) as caught:
        export_score(piece, fmt="midi")

    assert "end at bar 28" in caught.value.message
    assert "out of step" in caught.value.message
    assert "export musicxml" in caught.value.message


@pytest.mark.parametrize("name", ["reel_abc", "reel_open_repeat", "chorale_krn", "mazurka_krn"])
def test_abc_and_humdrum_sources_import_every_note(alice: Any, call: Any, name: str) -> None:
    music = original(name)

    result = imported(alice, call, name)

    assert (result["parts"], result["notes"], result["measures"]) == (
        len(music.parts),
        len(music.recurse().notes),
        measures(music),
    )
