"""Importing scores: every source type on real music, and every kind of bad input refused with nothing stored."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Any

import pytest
from music21 import common, corpus, environment, midi

from apps.core.errors import AlreadyExists, InvalidArguments, RejectedInput, ScoreParseError, UnsupportedFormat
from apps.security.models import SecurityEvent
from apps.tools.models import Score
from apps.tools.services.export import musicxml_text
from tests.support import ENDLESS_NOTE_MUSICXML

KERN = "**kern\t**kern\n*M4/4\t*M4/4\n=1\t=1\n4c\t4e\n4d\t4f\n4e\t4g\n4f\t4a\n=2\t=2\n1c\t1e\n*-\t*-\n"
ABC = "X:1\nT:Test Tune\nM:4/4\nL:1/4\nK:G\nGABc|d2 B2|cBAG|G4|\n"

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<score-partwise><work><work-title>&lol4;</work-title></work></score-partwise>"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE score-partwise [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<score-partwise><work><work-title>&xxe;</work-title></work></score-partwise>"""


def test_bach_chorale_from_the_corpus_has_the_known_shape(alice: Any, call: Any) -> None:
    result = call(alice, "import_score", score_id="bwv66.6", source="bach/bwv66.6", source_type="corpus")

    assert result["status"] == "success"
    assert (result["parts"], result["measures"], result["notes"]) == (4, 10, 165)
    assert result["pitch_range"] == {"lowest": "F#2", "highest": "E5"}
    stored = Score.objects.get(owner=alice, score_id="bwv66.6")
    assert stored.key_signatures == ["3 sharps"]
    assert stored.time_signatures == ["4/4"]
    assert stored.source_text == "bach/bwv66.6"


@pytest.mark.parametrize("kept", [0, 200], ids=["being-written", "cut-short"])
def test_a_corpus_work_imports_whole_when_music21s_pickle_of_it_is_torn(
    tmp_path: Path, alice: Any, call: Any, kept: int
) -> None:
    """music21 rewrites its pickle of a corpus work in place: another process can find it empty (being written) or
    cut short for good (its writer killed). The work still imports whole, and music21 reads it again afterwards."""
    music21_settings = environment.Environment()
    scratch = music21_settings["directoryScratch"]
    music21_settings["directoryScratch"] = str(tmp_path)
    try:
        whole = corpus.parse("bach/bwv10.7")  # music21 writes its pickle of the work here
        (pickled,) = tmp_path.glob("*.p.gz")
        pickled.write_bytes(pickled.read_bytes()[:kept])

        result = call(alice, "import_score", score_id="torn", source="bach/bwv10.7", source_type="corpus")

        assert (result["parts"], result["notes"]) == (len(whole.parts), len(whole.flatten().notes))
        assert len(corpus.parse("bach/bwv10.7").flatten().notes) == result["notes"]
    finally:
        music21_settings["directoryScratch"] = scratch


def test_score_info_reports_parts_measures_and_signatures(chorale: Any, alice: Any, call: Any) -> None:
    info = call(alice, "score_info", score_id="chorale")

    assert [p["name"] for p in info["parts"]] == ["Soprano", "Alto", "Tenor", "Bass"]
    assert info["measures"] == 10
    assert info["notes"] == 165
    assert info["time_signatures"] == ["4/4"]
    assert info["key_signatures"] == ["3 sharps"]
    assert info["duration_quarters"] == 36.0


@pytest.mark.parametrize(
    ("source_type", "source", "parts", "notes"),
    [
        ("tinynotation", "4/4 c'2 d'2 e'1\n4/4 f2 g2 a1", 2, 6),
        ("abc", ABC, 1, 11),
        ("humdrum", KERN, 2, 10),
    ],
)
def test_text_formats_import_with_their_notes(
    alice: Any, call: Any, source_type: str, source: str, parts: int, notes: int
) -> None:
    result = call(alice, "import_score", score_id=f"s-{source_type}", source=source, source_type=source_type)

    assert (result["parts"], result["notes"]) == (parts, notes)
    assert Score.objects.get(owner=alice, score_id=f"s-{source_type}").source_text == source


def test_abc_title_is_kept(alice: Any, call: Any) -> None:
    assert call(alice, "import_score", score_id="tune", source=ABC, source_type="abc")["title"] == "Test Tune"


@pytest.mark.parametrize(
    ("fields", "note_type", "quarters"),
    [
        ("", "eighth", 0.5),  # no meter is free meter (M:none): 1/8
        ("M:none\n", "eighth", 0.5),
        ("M:4/4\n", "eighth", 0.5),
        ("M:C\n", "eighth", 0.5),
        ("M:C|\n", "eighth", 0.5),
        ("M:3/4\n", "eighth", 0.5),
        ("M:6/8\n", "eighth", 0.5),  # 0.75: eighths
        ("M:2/4\n", "16th", 0.25),  # below 0.75: sixteenths
        ("M:3/8\n", "16th", 0.25),
        ("M:2/4\nL:1/4\n", "quarter", 1.0),  # an L: field decides, as before
    ],
    ids=["no-meter", "none", "4/4", "C", "C|", "3/4", "6/8", "2/4", "3/8", "2/4-with-L"],
)
def test_abc_without_a_unit_note_length_takes_the_standards_default(
    alice: Any, call: Any, fields: str, note_type: str, quarters: float
) -> None:
    """ABC 2.1, 3.1.7: without L:, the unit note length is 1/16 when the meter is below 0.75, else 1/8."""
    tune = f"X:1\nT:t\n{fields}K:C\nCDEF|\n"

    imported = call(alice, "import_score", score_id="tune", source=tune, source_type="abc")

    assert imported["notes"] == 4
    assert call(alice, "score_info", score_id="tune")["duration_quarters"] == 4 * quarters
    exported = call(alice, "export_score", score_id="tune", format="musicxml")["content"]
    assert re.findall(r"<type>([^<]+)</type>", exported) == [note_type] * 4


def test_musicxml_text_import_matches_the_original_notes(alice: Any, call: Any) -> None:
    xml = musicxml_text(corpus.parse("bach/bwv66.6"))

    result = call(alice, "import_score", score_id="xml", source=xml, source_type="musicxml")

    assert (result["parts"], result["measures"], result["notes"]) == (4, 10, 165)


def test_musicxml_of_a_piano_keeps_both_staves(alice: Any, call: Any) -> None:
    """A piano part is one MusicXML part on two staves; music21 reads it as two parts (right and left hand), the
    way its own converter.parse does. The import used to keep neither ("contains no notes")."""
    piece = corpus.parse("schumann_clara/polonaise_op1n2")

    result = call(alice, "import_score", score_id="piano", source=musicxml_text(piece), source_type="musicxml")

    assert result["parts"] == len(piece.parts) == 2
    assert result["notes"] == len(piece.recurse().notes)


def test_timewise_musicxml_is_refused_with_what_to_do(alice: Any, call: Any) -> None:
    with pytest.raises(ScoreParseError, match="partwise"):
        call(alice, "import_score", score_id="tw", source="<score-timewise/>", source_type="musicxml")


def test_midi_is_imported_from_base64_and_stored_as_bytes(alice: Any, call: Any) -> None:
    data = midi.translate.streamToMidiFile(corpus.parse("bach/bwv66.6")).writestr()

    result = call(alice, "import_score", score_id="mid", source=base64.b64encode(data).decode(), source_type="midi")

    assert result["parts"] == 4
    assert bytes(Score.objects.get(owner=alice, score_id="mid").source_bytes) == data
    assert any("pickup" in warning for warning in result["warnings"])


@pytest.mark.parametrize(
    ("source", "expected"),
    [("bach/bwv66.6", "corpus"), (ABC, "abc"), (KERN, "humdrum"), ("4/4 c4 d e f g1", "tinynotation")],
)
def test_auto_detects_the_source_type(alice: Any, call: Any, source: str, expected: str) -> None:
    assert call(alice, "import_score", score_id="auto", source=source)["source_format"] == expected


def test_file_import_reads_only_under_the_import_root(alice: Any, call: Any, settings: Any, tmp_path: Any) -> None:
    root = tmp_path / "imports"
    root.mkdir()
    (root / "tune.abc").write_text(ABC)
    (tmp_path / "secret.abc").write_text(ABC)
    (root / "link.abc").symlink_to(tmp_path / "secret.abc")
    settings.SCORE_IMPORT_ROOT = root

    assert call(alice, "import_score", score_id="f", source="tune.abc", source_type="file")["notes"] == 11
    for escape in ("../secret.abc", str(tmp_path / "secret.abc"), "link.abc", "../../../../etc/passwd"):
        with pytest.raises(RejectedInput, match="outside the import folder") as caught:
            call(alice, "import_score", score_id="escape", source=escape, source_type="file")
        assert caught.value.kind == "path_traversal"
    assert not Score.objects.filter(score_id="escape").exists()


def test_a_file_is_refused_as_its_text_would_be(alice: Any, call: Any, settings: Any, tmp_path: Any) -> None:
    (tmp_path / "endless.musicxml").write_text(ENDLESS_NOTE_MUSICXML)
    settings.SCORE_IMPORT_ROOT = tmp_path

    with pytest.raises(RejectedInput, match="measure 1 of part 1 alone holds 25,000,000 bars") as caught:
        call(alice, "import_score", score_id="endless", source="endless.musicxml", source_type="file")
    assert caught.value.kind == "oversize"
    assert not Score.objects.exists()


TINY = "4/4 c4 d e f g1"


def _server_file(tmp_path: Path, source_type: str) -> Path:
    """A file on the server holding real music that `source_type` would read, were its name the music."""
    if source_type == "corpus":  # music21 parses a corpus path given as an absolute file name
        return Path(common.getCorpusFilePath()) / "bach" / "bwv66.6.mxl"
    if source_type == "midi":
        path = tmp_path / "tune.mid"
        path.write_bytes(midi.translate.streamToMidiFile(corpus.parse("bach/bwv66.6")).writestr())
        return path
    name, text = {
        "abc": ("tune.abc", ABC),
        "humdrum": ("tune.krn", KERN),
        "musicxml": ("tune.musicxml", musicxml_text(corpus.parse("bach/bwv66.6"))),
        "tinynotation": ("tune.tny", TINY),
        "auto": ("tune.abc", ABC),
    }[source_type]
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("source_type", ["abc", "musicxml", "humdrum", "tinynotation", "midi", "corpus", "auto"])
@pytest.mark.parametrize("form", ["absolute", "relative", "home", "url"])
def test_a_file_path_given_as_the_source_is_refused_the_same_way_for_every_type_and_never_read(
    alice: Any, call: Any, settings: Any, tmp_path: Path, source_type: str, form: str
) -> None:
    # music21's converter.parse opens a string naming an existing file (or fetches an http URL) instead of parsing
    # it, and its corpus opens a file path: the server's files would be imported by anyone, with or without
    # SCORE_IMPORT_ROOT. Each form names the file as the server process would find it.
    settings.SCORE_IMPORT_ROOT = None
    path = _server_file(tmp_path, source_type)
    source = {
        "absolute": str(path),
        "relative": "../" * (len(Path.cwd().parts) - 1) + str(path).lstrip("/"),
        "home": "~/" + os.path.relpath(path, Path.home()),
        "url": path.as_uri(),
    }[form]

    with pytest.raises(RejectedInput, match="is a file path or URL, which the server does not open") as refused:
        call(alice, "import_score", score_id="server-file", source=source, source_type=source_type)

    assert refused.value.kind == "path_traversal"
    assert "use source_type 'file'" in str(refused.value)
    event = SecurityEvent.objects.get(kind="hostile_input", user=alice)
    assert (event.detail["input_kind"], event.detail["tool"]) == ("path_traversal", "import_score")
    assert not alice.scores.exists()


def test_file_import_is_refused_when_no_root_is_configured(alice: Any, call: Any, settings: Any) -> None:
    settings.SCORE_IMPORT_ROOT = None

    with pytest.raises(UnsupportedFormat, match="SCORE_IMPORT_ROOT"):
        call(alice, "import_score", score_id="f", source="../../etc/passwd", source_type="file")


@pytest.mark.parametrize(("document", "kind"), [(BILLION_LAUGHS, "xml_entities"), (EXTERNAL_ENTITY, "xml_entities")])
def test_xml_entities_are_refused(alice: Any, call: Any, document: str, kind: str) -> None:
    with pytest.raises(RejectedInput, match="entities") as caught:
        call(alice, "import_score", score_id="bomb", source=document, source_type="musicxml")

    assert caught.value.kind == kind
    assert not Score.objects.exists()


def test_deeply_nested_xml_is_refused(alice: Any, call: Any) -> None:
    document = "<score-partwise>" + "<a>" * 5000 + "</a>" * 5000 + "</score-partwise>"

    with pytest.raises(RejectedInput, match="deeper than") as caught:
        call(alice, "import_score", score_id="deep", source=document, source_type="musicxml")
    assert caught.value.kind == "xml_depth"


def _one_note_midi(ticks: int) -> str:
    """A MIDI file of one middle C lasting `ticks` at one tick a quarter note, base64-encoded."""

    def quantity(n: int) -> bytes:  # MIDI's variable-length quantity
        out = [n & 0x7F]
        while n := n >> 7:
            out.append((n & 0x7F) | 0x80)
        return bytes(reversed(out))

    track = quantity(0) + b"\x90\x3c\x40" + quantity(ticks) + b"\x80\x3c\x40" + quantity(0) + b"\xff\x2f\x00"
    header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big") + (1).to_bytes(2, "big")
    return base64.b64encode(header + b"MTrk" + len(track).to_bytes(4, "big") + track).decode()


@pytest.mark.parametrize(
    ("source", "source_type", "refused", "message"),
    [
        (_one_note_midi(0x0FFFFFFF), "midi", RejectedInput, "lasts 268,435,455 quarter notes"),
        ("4/4 " + "a" * 150_000, "tinynotation", ScoreParseError, "a word of 150,000 characters"),
        (
            ENDLESS_NOTE_MUSICXML.replace("<duration>99999999</duration>", "<duration>-4</duration>"),
            "musicxml",
            ScoreParseError,
            "negative <duration>",
        ),
        (
            ENDLESS_NOTE_MUSICXML.replace(
                "<duration>99999999</duration></note>",
                '<duration>4</duration></note><barline><repeat direction="backward" times="1000000"/></barline>',
            ),
            "musicxml",
            RejectedInput,
            "a repeat played 1000000 times",
        ),
    ],
)
def test_a_few_bytes_that_would_make_work_without_end_are_refused_at_once(
    alice: Any, call: Any, source: str, source_type: str, refused: type, message: str
) -> None:
    with pytest.raises(refused, match=message):
        call(alice, "import_score", score_id="tiny", source=source, source_type=source_type)
    assert not Score.objects.exists()
    assert call(alice, "import_score", score_id="tiny", source=_one_note_midi(4), source_type="midi")["notes"] == 1


def test_fifty_megabytes_of_text_is_refused_before_parsing(alice: Any, call: Any) -> None:
    with pytest.raises(RejectedInput, match="over the limit") as caught:
        call(alice, "import_score", score_id="huge", source="c4 " * (50 * 1024 * 1024 // 3), source_type="tinynotation")

    assert caught.value.kind == "oversize"
    assert not Score.objects.exists()


METERED_MUSICXML = """<?xml version="1.0"?>
<score-partwise><part-list><score-part id="P1"><part-name>Melody</part-name></score-part></part-list>
<part id="P1"><measure number="1"><attributes><divisions>1</divisions>
<time><beats>{beats}</beats><beat-type>{beat_type}</beat-type></time></attributes>
<note><pitch><step>C</step><octave>4</octave></pitch><duration>1</duration><type>quarter</type></note>
</measure></part></score-partwise>"""


def _midi_with_beats(beats: int) -> str:
    """bwv66.6 as base64 MIDI, its time signature saying `beats` beats in a bar."""
    data = bytearray(midi.translate.streamToMidiFile(corpus.parse("bach/bwv66.6")).writestr())
    data[data.index(b"\xff\x58\x04") + 3] = beats  # the time-signature meta event's numerator
    return base64.b64encode(bytes(data)).decode()


def _beats_refused(written: str) -> str:
    return f"a time signature of {written} beats in a bar; this server reads at most 64"


def _bars_refused(held: str) -> str:
    return f"{held} bars of its meter. This server accepts at most 1,000 such extra bars"


@pytest.mark.parametrize(
    ("source_type", "source", "said"),
    [
        # music21 spends longer than any time limit laying out such a bar: 13 bytes held a tool process till killed.
        ("tinynotation", "99999/1 c1 d1", _beats_refused("99999")),
        ("abc", "X:1\nM:99999/1\nL:1/4\nK:C\nC|\n", _beats_refused("99999")),
        ("abc", "X:1\nM:40+40/8\nL:1/8\nK:C\nC|\n", _beats_refused("40+40")),  # music21's ABC reader: 4040/8
        ("humdrum", "**kern\n*M99999/1\n1c\n*-\n", _beats_refused("99999")),
        ("musicxml", METERED_MUSICXML.format(beats="99999", beat_type="1"), _beats_refused("99999")),
        ("musicxml", METERED_MUSICXML.format(beats="60+60", beat_type="8"), _beats_refused("60+60")),
        ("midi", _midi_with_beats(255), _beats_refused("255")),
        # Read in milliseconds, such a score is split into bars for ever by every tool that writes it out (export,
        # render, transpose, harmonise), taking memory without end: 300 bytes, and an ABC note without bar lines.
        ("musicxml", ENDLESS_NOTE_MUSICXML, "measure 1 of part 1 alone holds " + _bars_refused("25,000,000")),
        ("abc", "X:1\nM:4/4\nL:1/4\nK:C\nC9999 |\n", "holds 2,499 bars more than it has measures"),
    ],
)
def test_a_score_music21_would_lay_out_without_end_is_refused_at_import(
    alice: Any, call: Any, source_type: str, source: str, said: str
) -> None:
    with pytest.raises(RejectedInput) as caught:
        call(alice, "import_score", score_id="endless", source=source, source_type=source_type)

    assert caught.value.kind == "oversize"
    assert said in str(caught.value)
    assert not Score.objects.exists()


@pytest.mark.parametrize(
    ("source_type", "source", "meter"),
    [
        ("musicxml", METERED_MUSICXML.format(beats="3+3+2", beat_type="8"), "3/8+3/8+2/8"),  # 8 beats, not 332
        ("tinynotation", "64/4 c1 d1 e1", "64/4"),
        ("humdrum", "**kern\n*M21/16\n4c\n*-\n", "21/16"),
    ],
)
def test_long_and_additive_bars_of_real_music_are_read(
    alice: Any, call: Any, source_type: str, source: str, meter: str
) -> None:
    result = call(alice, "import_score", score_id="bar", source=source, source_type=source_type)

    assert result["status"] == "success"
    assert Score.objects.get(owner=alice, score_id="bar").time_signatures == [meter]


def test_measures_holding_a_few_bars_each_are_read(alice: Any, call: Any) -> None:
    # A cadenza in one measure, music without bar lines: music21 writes them out as the bars they hold.
    cadenza = METERED_MUSICXML.replace("<duration>1</duration><type>quarter</type>", "<duration>40</duration>")
    cadenza = cadenza.format(beats="4", beat_type="4")
    read = call(alice, "import_score", score_id="cadenza", source=cadenza, source_type="musicxml")
    assert read["status"] == "success"
    tune = "X:1\nM:6/8\nL:1/8\nK:G\n" + "GAB cde dBG AFD " * 16 + "\n"  # 32 bars, not one bar line
    assert call(alice, "import_score", score_id="tune", source=tune, source_type="abc")["status"] == "success"
    exported = call(alice, "export_score", score_id="tune", format="musicxml")["content"]
    assert exported.count("<measure ") == 32


def test_invalid_base64_midi_is_refused(alice: Any, call: Any) -> None:
    with pytest.raises(InvalidArguments, match="not valid base64"):
        call(alice, "import_score", score_id="m", source="this is not base64!!", source_type="midi")


def test_base64_that_is_not_midi_is_refused(alice: Any, call: Any) -> None:
    with pytest.raises(ScoreParseError, match="midi"):
        call(alice, "import_score", score_id="m", source=base64.b64encode(b"hello").decode(), source_type="midi")


@pytest.mark.parametrize(
    ("source_type", "source", "told"),
    [
        ("tinynotation", "4/0 c4 d e f", "a time signature or a note length has 0 below the line"),
        ("abc", "X:1\nM:4/4\nL:1/0\nK:C\nCDEF|\n", "a time signature or a note length has 0 below the line"),
        ("abc", "X:1\nM:4/0\nL:1/4\nK:C\nCDEF|\n", "a time signature or a note length has 0 below the line"),
        ("midi", "TVRoZAAAAAYAAQ==", "the MIDI data ends in the middle of its header or of a track"),  # 10 bytes
    ],
    ids=["tinynotation-meter", "abc-length", "abc-meter", "midi-cut-short"],
)
def test_a_fault_music21_reports_as_a_python_error_is_told_in_musical_words(
    alice: Any, call: Any, source_type: str, source: str, told: str
) -> None:
    # They were "float division by zero", "division by zero" and "index out of range"
    with pytest.raises(ScoreParseError) as refused:
        call(alice, "import_score", score_id="x", source=source, source_type=source_type)
    assert str(refused.value).startswith(f"The {source_type} source could not be parsed: {told}")
    assert not Score.objects.filter(score_id="x").exists()


def test_an_abc_parse_error_is_told_without_music21s_objects(alice: Any, call: Any) -> None:
    # music21's ABC parser appends "tPrev: None, token: <music21.abcFormat.ABCNote 'a'>, tNext: ..." to its reason
    with pytest.raises(ScoreParseError) as refused:
        call(alice, "import_score", score_id="x", source="not abc at all", source_type="abc")

    assert str(refused.value) == (
        "The abc source could not be parsed: no active default note length provided for note processing."
    )
    assert not alice.scores.exists()


@pytest.mark.parametrize("source_type", ["corpus", "tinynotation", "abc", "musicxml", "midi", "humdrum", "auto"])
def test_an_empty_source_is_refused_as_empty(alice: Any, call: Any, source_type: str) -> None:
    with pytest.raises(InvalidArguments, match=f"source is empty: give the music to import as '{source_type}'"):
        call(alice, "import_score", score_id="x", source=" \n", source_type=source_type)
    assert not alice.scores.exists()


@pytest.mark.parametrize(("source", "word"), [("4/4 c4 zz d", "zz"), ("2/4 c4 C,4", "C,4"), ("4/4 c1000 d", "c1000")])
def test_a_tinynotation_word_music21_cannot_read_is_named_not_left_out(
    alice: Any, call: Any, source: str, word: str
) -> None:
    # music21 leaves such a word out: "4/4 c4 zz d" was imported as two notes, with no word of what was lost.
    with pytest.raises(ScoreParseError, match=f"Could not parse token: {word!r}"):
        call(alice, "import_score", score_id="x", source=source, source_type="tinynotation")
    assert not alice.scores.exists()


@pytest.mark.parametrize(("source", "word"), [("4/4 c4 d e tune.xml", "tune.xml"), ("melody.abc", "melody.abc")])
def test_a_tinynotation_line_ending_like_a_file_name_is_told_as_a_word_not_a_missing_file(
    alice: Any, call: Any, source: str, word: str
) -> None:
    # music21's converter.parse takes a string ending in a score file's extension for a file name: it answered
    # "Cannot find file in tinyNotation: ...", as if the server looked for files named in the music.
    with pytest.raises(ScoreParseError) as refused:
        call(alice, "import_score", score_id="x", source=source, source_type="tinynotation")

    assert str(refused.value) == f"The tinynotation source could not be parsed: Could not parse token: {word!r}"
    assert not alice.scores.exists()


def test_a_tinynotation_score_stored_before_the_words_were_checked_still_reads(alice: Any, call: Any) -> None:
    call(alice, "import_score", score_id="tune", source="4/4 c4 d e f", source_type="tinynotation")
    Score.objects.filter(owner=alice, score_id="tune").update(source_text="4/4 c4 zz d e f", content_sha256="old")

    assert call(alice, "score_info", score_id="tune")["notes"] == 4


def test_malformed_musicxml_names_the_problem(alice: Any, call: Any) -> None:
    with pytest.raises(ScoreParseError, match="not well-formed"):
        call(alice, "import_score", score_id="x", source="<score-partwise><part>", source_type="musicxml")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"score_id": "a", "source": "c4", "source_type": "lilypond"}, "source_type"),
        ({"score_id": 5, "source": "c4"}, "score_id"),
        ({"score_id": "a", "source": ["c4"]}, "source"),
        ({"score_id": "../etc", "source": "c4"}, "score_id"),
        ({"source": "c4"}, "score_id: required"),
        ({"score_id": "a", "source": "c4", "overwrite": True}, "overwrite: unknown argument"),
        ({"score_id": "a", "source": "4/4 c4 d4\x00", "source_type": "tinynotation"}, "NUL character"),
        ({"score_id": "a", "source": "X:1\nT:a\x00b\nL:1/4\nK:C\nC D E F|]", "source_type": "abc"}, "NUL"),
    ],
)
def test_wrong_arguments_are_named(alice: Any, call: Any, arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArguments, match=message):
        call(alice, "import_score", **arguments)
    assert not Score.objects.exists()


def test_a_corpus_work_whose_name_has_spaces_is_imported(alice: Any, call: Any) -> None:
    imported = call(
        alice, "import_score", score_id="cara", source="trecento/PMFC_04-Cara mi donna", source_type="corpus"
    )
    assert (imported["source_format"], imported["parts"]) == ("corpus", 3)


def test_unknown_corpus_work_is_named(alice: Any, call: Any) -> None:
    with pytest.raises(InvalidArguments, match="No work 'bach/bwv9999'"):
        call(alice, "import_score", score_id="x", source="bach/bwv9999", source_type="corpus")


@pytest.mark.parametrize(
    ("source", "meant"),
    [
        ("bach", "could mean 430: 'bach/bwv1.6', 'bach/bwv10.7'"),
        ("bach/bwv66", "could mean 1: 'bach/bwv66.6'"),
        ("beethoven/opus18no1", "could mean 4: 'beethoven/opus18no1/movement1'"),
    ],
)
def test_a_corpus_path_naming_no_single_work_is_refused_with_the_works_it_could_mean(
    alice: Any, call: Any, source: str, meant: str
) -> None:
    # music21 would parse the first work it finds by any part of its path: 'bach' imported bwv1.6.
    with pytest.raises(InvalidArguments, match=f"{source!r} is not the path of one work .* {meant}"):
        call(alice, "import_score", score_id="x", source=source, source_type="corpus")
    assert not alice.scores.exists()


@pytest.mark.parametrize("source", ["bach/bwv66.6.mxl", "BACH/BWV66.6", "bwv66.6"])
def test_a_corpus_work_is_found_by_its_file_name_case_or_last_part(alice: Any, call: Any, source: str) -> None:
    imported = call(alice, "import_score", score_id="x", source=source, source_type="corpus")
    assert (imported["parts"], imported["measures"], imported["notes"]) == (4, 10, 165)


def test_a_duplicate_id_is_refused_and_the_original_kept(chorale: Any, alice: Any, call: Any) -> None:
    with pytest.raises(AlreadyExists, match="already have a score with id 'chorale'"):
        call(alice, "import_score", score_id="chorale", source="4/4 c4 d e f", source_type="tinynotation")

    assert Score.objects.get(owner=alice, score_id="chorale").notes_count == 165


def test_the_same_id_may_be_used_by_two_owners(chorale: Any, bob: Any, call: Any) -> None:
    call(bob, "import_score", score_id="chorale", source="4/4 c4 d e f", source_type="tinynotation")

    assert sorted(Score.objects.values_list("owner__username", "notes_count")) == [("alice", 165), ("bob", 4)]


def test_a_score_is_parsed_once_from_its_import_to_its_first_analysis(alice: Any, call: Any, monkeypatch: Any) -> None:
    from apps.tools.services import parsing, scores

    parses: list[str] = []
    real = parsing.parse_stored

    def counted(source_format: str, **source: Any) -> Any:
        parses.append(source_format)
        return real(source_format, **source)

    monkeypatch.setattr(parsing, "parse_stored", counted)
    monkeypatch.setattr(scores, "parse_stored", counted)
    call(alice, "import_score", score_id="chorale", source="bach/bwv66.6", source_type="corpus")
    assert call(alice, "voice_leading_analysis", score_id="chorale")["parts"][0]["part_label"] == "Soprano"
    assert parses == ["corpus"]
