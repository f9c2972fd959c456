"""Music for transposing instruments is analysed as it sounds: a Bb clarinet's written D4 is the C4 it plays.

A small MusicXML score written out by hand here (a violin and a clarinet in Bb, whose part carries MusicXML's
`<transpose>`: written a major second above the sound) says what a musician hears: the real parallel fifths and
not the written ones, the tonic chord where the parts sound in octaves, the concert key signature. Two corpus works
check it on real music: Weber's Concertino for clarinet and piano, and a trecento ballata whose Tenor is written an
octave above its sound. Each expectation is read beside the case from the score itself, with music21's
`toSoundingPitch`."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pytest
from music21 import corpus, stream

from apps.tools.services import composition, counterpoint, harmonisation, harmony, keys, summary, voiceleading
from apps.tools.services.derived import sounding, transposing_parts
from apps.tools.services.parsing import parse_stored

# --- A violin and a clarinet in Bb, written by hand -----------------------------------------------------------------

_TYPES = {4: "whole", 2: "half", 1: "quarter"}


@dataclass(frozen=True)
class _Part:
    """A part of 4/4 measures, each written as notes `step[#|b]octave:quarters` (`F#4:2` is a half note)."""

    name: str
    measures: tuple[str, ...]
    fifths: int = 0  # the written key signature
    clarinet_in_b_flat: bool = False  # written a major second above its sound (MusicXML's <transpose>)
    clef: str = "treble"

    def xml(self, part_id: str) -> str:
        transpose = "<transpose><diatonic>-1</diatonic><chromatic>-2</chromatic></transpose>"
        sign, line = {"treble": ("G", 2), "bass": ("F", 4)}[self.clef]
        xml = [f'<part id="{part_id}">']
        for number, notes in enumerate(self.measures, start=1):
            xml.append(f'<measure number="{number}">')
            if number == 1:
                xml.append(
                    f"<attributes><divisions>1</divisions><key><fifths>{self.fifths}</fifths></key>"
                    f"<time><beats>4</beats><beat-type>4</beat-type></time><clef><sign>{sign}</sign>"
                    f"<line>{line}</line></clef>{transpose if self.clarinet_in_b_flat else ''}</attributes>"
                )
            for written in notes.split():
                name, length = written.split(":")
                alter = {"#": 1, "b": -1}.get(name[1:-1], 0)
                xml.append(
                    f"<note><pitch><step>{name[0]}</step>{f'<alter>{alter}</alter>' if alter else ''}"
                    f"<octave>{name[-1]}</octave></pitch><duration>{length}</duration>"
                    f"<type>{_TYPES[int(length)]}</type></note>"
                )
            xml.append("</measure>")
        return "".join([*xml, "</part>"])


def _score(*parts: _Part) -> stream.Score:
    named = [(f"P{index}", part) for index, part in enumerate(parts, start=1)]
    names = "".join(f'<score-part id="{i}"><part-name>{p.name}</part-name></score-part>' for i, p in named)
    body = "".join(p.xml(i) for i, p in named)
    text = f'<?xml version="1.0"?><score-partwise version="4.0"><part-list>{names}</part-list>{body}</score-partwise>'
    return parse_stored("musicxml", text=text)


def _heard(music: stream.Score, name: str, measure: int) -> list[str]:
    """music21's own reading of a part's notes in one measure at sounding pitch."""
    part = next(p for p in music.toSoundingPitch(inPlace=False).parts if p.partName == name)
    return [n.nameWithOctave for n in part.measure(measure).notes]


# A phrase in C major. The violin plays at concert pitch; the clarinet's part is written in D major (two sharps), a
# major second above what it plays: it sounds C4 | C4 D4 | G3 G3 | A3 G3 | F3 B3 | G3 B3 | C4, under the violin.
VIOLIN = _Part("Violin", ("C5:4", "G4:2 A4:2", "B4:2 D5:2", "C5:2 E5:2", "F5:2 D5:2", "B4:2 G4:2", "C5:4"))
CLARINET = _Part(
    "Clarinet in Bb",
    ("D4:4", "D4:2 E4:2", "A3:2 A3:2", "B3:2 A3:2", "G3:2 C#4:2", "A3:2 C#4:2", "D4:4"),
    fifths=2,
    clarinet_in_b_flat=True,
)
BOTH_ORDERS = pytest.mark.parametrize(
    "parts", [(VIOLIN, CLARINET), (CLARINET, VIOLIN)], ids=["violin-first", "clarinet-first"]
)


@BOTH_ORDERS
def test_the_parallel_fifths_are_the_ones_that_sound(parts: tuple[_Part, _Part]) -> None:
    music = _score(*parts)
    # Bar 2: the violin G4-A4 over the clarinet's written D4-E4, which sound C4-D4: G/C to A/D, a fifth each time.
    # As written they are fourths (G4/D4, A4/E4), and nothing else in the phrase moves in fifths.
    assert _heard(music, "Clarinet in Bb", 2) == ["C4", "D4"]
    fifths = voiceleading.voice_leading_analysis(music)["parallel_fifths"]
    assert [(f["measure"], f["beat"]) for f in fifths] == [(2, 3.0)]
    (finding,) = fifths
    heard = {finding["from"]["upper"], finding["from"]["lower"], finding["to"]["upper"], finding["to"]["lower"]}
    assert heard == {"G4", "C4", "A4", "D4"}


def test_fifths_that_are_only_written_are_not_reported() -> None:
    # The violin's G4-A4 over the clarinet's written C4-D4: fifths on paper, but the clarinet plays Bb3-C4 (sixths).
    music = _score(_Part("Violin", ("G4:2 A4:2",)), _Part("Clarinet in Bb", ("C4:2 D4:2",), 2, True))
    assert _heard(music, "Clarinet in Bb", 1) == ["B-3", "C4"]
    assert voiceleading.voice_leading_analysis(music)["parallel_fifths"] == []


@BOTH_ORDERS
def test_the_chords_are_the_ones_that_sound(parts: tuple[_Part, _Part]) -> None:
    answer = harmony.chord_analysis(_score(*parts))
    assert answer["key"] == "C major"
    first, last = answer["chords"][0], answer["chords"][-1]
    # The violin's C5 over the clarinet's written D4 (a C4): C in octaves, not a D-C seventh (an octave is no
    # chord and has no numeral).
    assert (first["pitches"], first["roman_numeral"]) == (["C4", "C5"], None)
    assert (last["measure"], last["pitches"], last["roman_numeral"]) == (7, ["C4", "C5"], None)
    assert harmony.harmony_analysis(_score(*parts))["figures"].startswith("I ")


@BOTH_ORDERS
def test_the_key_signature_is_the_concert_pitchs(parts: tuple[_Part, _Part]) -> None:
    music = _score(*parts)
    # The clarinet's two sharps are the written signature of a part that sounds in C: the piece has none.
    found = keys.key_analysis(music)
    assert (found["key"], found["key_signature"], found["key_signature_keys"]) == (
        "C major",
        "no sharps or flats",
        "C major / A minor",
    )
    assert summary.score_summary(music)["key_signatures"] == ["no sharps or flats"]
    # The range heard: the clarinet's lowest written G3 sounds F3.
    assert summary.score_summary(music)["lowest_pitch"] == "F3"
    transposed = composition.transpose(music, interval="M2")[1]
    assert (transposed["key_signature_before"], transposed["key_signature_after"]) == ("no sharps or flats", "2 sharps")


def test_key_rankings_are_music21s_on_the_music_as_it_sounds() -> None:
    music = _score(VIOLIN, CLARINET)
    for profile in keys.KEY_ALGORITHMS.values():
        found = music.toSoundingPitch(inPlace=False).analyze(profile)
        theirs = [(k.tonic.name, k.mode, k.correlationCoefficient) for k in [found, *found.alternateInterpretations]]
        assert [(k.tonic, k.mode, k.correlation) for k in keys.profile_keys(music, profile)] == theirs, profile


def test_the_parsed_score_is_left_as_written() -> None:
    music = _score(VIOLIN, CLARINET)
    voiceleading.voice_leading_analysis(music)
    harmony.chord_analysis(music)
    assert transposing_parts(music) == (1,)
    assert [n.nameWithOctave for n in music.parts[1].measure(1).notes] == ["D4"]
    assert music.parts[1].atSoundingPitch is False
    view = sounding(music)
    assert view is not music and sounding(view) is view
    assert [n.nameWithOctave for n in view.parts[1].measure(1).notes] == ["C4"]


def test_music_without_transposing_parts_is_read_as_it_is() -> None:
    music = corpus.parse("bach/bwv66.6")
    assert transposing_parts(music) == ()
    assert sounding(music) is music  # no copy


# --- Writing music from a clarinet's tune ---------------------------------------------------------------------------

# The clarinet's written D5 F#5 | E5 A5 | G5 F#5 | D5 sounds C5 E5 | D5 G5 | F5 E5 | C5, over a cello's C major bass.
TUNE = _Part("Clarinet in Bb", ("D5:2 F#5:2", "E5:2 A5:2", "G5:2 F#5:2", "D5:4"), 2, True)
CELLO = _Part("Violoncello", ("C3:2 E3:2", "G2:2 C3:2", "G2:2 G2:2", "C2:4"), clef="bass")
HEARD = ["C5", "E5", "D5", "G5", "F5", "E5", "C5"]


def test_a_clarinets_tune_is_harmonised_as_it_sounds() -> None:
    result, info = harmonisation.harmonize_melody(_score(TUNE, CELLO), melody_part=0)
    # Harmonised in the key it sounds in, and written out at that pitch: C major, ending on the tonic.
    assert info["key"] == "C major"
    assert [n.nameWithOctave for n in result.parts[0].recurse().notes] == HEARD
    assert info["progression"][-1] == "I"
    assert any("sounding pitch" in warning for warning in info["warnings"])


def test_counterpoint_against_a_clarinets_tune_is_written_as_it_sounds() -> None:
    result, info = counterpoint.generate_counterpoint(_score(TUNE, CELLO), species=1)
    assert info["final"] == "C"
    cantus = result.parts[1]
    assert [n.nameWithOctave for n in cantus.recurse().notes] == HEARD
    assert [s.sharps for s in result.recurse().getElementsByClass("KeySignature")] == [0, 0]
    assert info["violations"] == []


# --- Corpus works -------------------------------------------------------------------------------------------------


@functools.cache
def _work(path: str) -> stream.Score:
    return corpus.parse(path)


def test_weber_concertino_is_in_three_flats() -> None:
    # The clarinet in Bb is written in one flat (F major), the piano in three: the piece is in Eb major.
    music = _work("weber/concertino_clarinet")
    assert [s.sharps for s in music.parts[0].recurse().getElementsByClass("KeySignature")][:1] == [-1]
    found = keys.key_analysis(music)
    assert (found["key"], found["key_signature"], found["key_signature_keys"]) == (
        "Eb major",
        "3 flats",
        "Eb major / C minor",
    )
    assert summary.score_summary(music)["key_signatures"] == ["3 flats"]


def test_weber_concertino_voice_crossings_are_the_ones_that_sound() -> None:
    music = _work("weber/concertino_clarinet")
    heard = music.toSoundingPitch(inPlace=False)
    # Bar 44: the clarinet's written C4 sounds Bb3, under the piano's C4: a crossing a listener hears, unseen on paper.
    assert [n.nameWithOctave for n in heard.parts[0].measure(44).notes][:1] == ["B-3"]
    assert [n.nameWithOctave for n in music.parts[0].measure(44).notes][:1] == ["C4"]
    crossings = voiceleading.voice_leading_analysis(music)["voice_crossings"]
    details = {(c["measure"], c["beat"]): c["detail"] for c in crossings}
    assert details[(44, 1.0)] == "Bb Clarinet (Bb3) goes below Piano 1 (C4)"
    # Bar 76 begins inside a crossing that began in bar 75 (the clarinet's Ab3 under the piano's Bb3): the written
    # A3 is no new one.
    assert (76, 1.0) not in details
    assert details[(75, 2.833)] == "Bb Clarinet (Ab3) goes below Piano 1 (Bb3)"
    assert len(crossings) == 43


def test_a_tenor_written_an_octave_high_is_heard_an_octave_lower() -> None:
    # Jacopo's "Aquila altera": the Tenor is written in the bass clef with MusicXML's octave-down transposition.
    music = _work("trecento/PMFC_06-Jacopo-01-Aquila-Altera")
    assert [n.nameWithOctave for n in music.parts[2].measure(1).notes] == ["D4"]
    first = harmony.chord_analysis(music)["chords"][0]
    # A bare fifth on the tonic of D minor, with the key's third: i.
    assert (first["measure"], first["pitches"], first["roman_numeral"]) == (1, ["D3", "A4"], "i")
    assert summary.score_summary(music)["lowest_pitch"] == "C2"
