"""Harmonisations of real melodies keep the four-part rules, counted by music21's VoiceLeadingQuartet.

Each melody is a real one: chorale sopranos from the bundled Bach chorales (major and minor), folk songs from the
Essen collection (ABC), and a chorale's bass line as a melody far below the soprano's range. The rules are the
textbook's: no consecutive fifths or octaves between any two voices, no crossing, S C4-G5, A G3-D5, T C3-G4,
B E2-C4, an octave at most between S-A and A-T and a twelfth between T-B, every chord with its root and third, the
final tonic chord complete.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
from music21 import chord as m21chord
from music21 import converter, corpus, key, pitch, roman, stream

from apps.core.errors import InvalidArguments
from apps.tools.services.harmonisation import harmonize_melody
from apps.tools.services.satb import violation_counts, voice_leading_violations

# (corpus path, number in an ABC collection or None, the key a musician reads from the signature and the close).
MELODIES = [
    ("bach/bwv66.6", None, "F# minor"),
    ("bach/bwv269", None, "G major"),
    ("bach/bwv347", None, "A major"),
    ("bach/bwv1.6", None, "F major"),  # its first part is a horn: the soprano must be found by its label
    ("bach/bwv2.6", None, "G minor"),
    ("bach/bwv10.7", None, "G minor"),
    ("bach/bwv86.6", None, "E major"),
    ("bach/bwv244.3", None, "B minor"),  # the soprano reaches G5, the top of its range
    ("bach/bwv4.8", None, "D minor"),
    ("bach/bwv153.1", None, "A minor"),
    ("essenFolksong/altdeu10", 1, "G major"),  # Das Hildebrandslied
    ("essenFolksong/altdeu10", 2, "A minor"),  # Herzog Ernst
    ("essenFolksong/kinder0", 1, "F major"),  # Schlaf, Kindlein, schlaf
    ("essenFolksong/ballad10", 3, "G major"),  # Braut-Werbung (Hildesage)
]
RULES_KEPT = {
    "parallel_fifths": 0,
    "parallel_octaves": 0,
    "voice_crossings": 0,
    "out_of_range": 0,
    "spacing": 0,
    "incomplete_final_chord": 0,
}


@cache
def _parsed(path: str, number: int | None) -> stream.Score:
    return corpus.parse(path, number=number) if number else corpus.parse(path)


@cache
def _harmonised(path: str, number: int | None, **options: Any) -> tuple[stream.Score, dict[str, Any]]:
    return harmonize_melody(_parsed(path, number), **options)


def _columns(music: stream.Score) -> list[list[pitch.Pitch]]:
    """The sounding pitches, soprano to bass, at each new melody note (all four voices share its rhythm)."""
    voices = [[n.pitch for n in part.recurse().notes if n.tie is None or n.tie.type == "start"] for part in music.parts]
    return [list(column) for column in zip(*voices, strict=True)]


def _melody(music: stream.Score, index: int) -> list[int]:
    part = music.parts[index] if music.parts else music
    return [n.pitch.midi for n in part.recurse().notes]


def _music21_key(name: str) -> key.Key:
    tonic, mode = name.split()
    return key.Key(tonic.replace("b", "-") if len(tonic) > 1 else tonic, mode)


@pytest.mark.parametrize(("path", "number", "expected_key"), MELODIES)
def test_a_real_melody_is_harmonised_without_breaking_a_rule(path: str, number: int | None, expected_key: str) -> None:
    music, info = _harmonised(path, number)
    in_key = _music21_key(info["key"])
    assert info["key"] == expected_key
    # The counts the client sees are the checker's, and the checker, run again here, finds nothing either.
    assert info["checks"] == RULES_KEPT
    assert violation_counts(voice_leading_violations(music, in_key=in_key)) == RULES_KEPT
    assert info["warnings"] == []
    # The melody is the source's melody part, note for note, and is the soprano.
    source = _parsed(path, number)
    assert music.parts[0].partName == "Soprano"
    assert _melody(music, 0) == _melody(source, info["melody_part"]["part"])
    # Every chord holds its root and third (and its seventh) among the four voices, as its Roman numeral spells it.
    for figure, column in zip(info["progression"], _columns(music), strict=True):
        chord = roman.RomanNumeral(figure, in_key)
        sounding = {p.name for p in column}
        assert {chord.root().name, chord.third.name} <= sounding, figure
        if chord.isSeventh():
            assert chord.seventh.name in sounding, figure
    # The close: a tonic chord in root position with its root doubled or its fifth present.
    final = _columns(music)[-1]
    assert final[-1].name == in_key.tonic.name
    names = [p.name for p in final]
    assert names.count(in_key.tonic.name) >= 2 or in_key.pitchFromDegree(5).name in names


@pytest.mark.parametrize("style", ["classical", "jazz", "pop"])
@pytest.mark.parametrize(("path", "number"), [("bach/bwv2.6", None), ("essenFolksong/altdeu10", 2)])
def test_every_style_keeps_the_rules_on_a_minor_chorale_and_a_minor_folk_song(
    path: str, number: int | None, style: str
) -> None:
    # Jazz chords are sevenths: root, third and seventh make them complete, the fifth may be left out.
    music, info = _harmonised(path, number, style=style)
    assert info["checks"] == RULES_KEPT
    assert violation_counts(voice_leading_violations(music, in_key=_music21_key(info["key"]))) == RULES_KEPT
    assert info["progression"][-1] in ("i", "i7")


def test_a_chorale_melody_whose_first_part_is_a_horn_is_taken_from_the_soprano() -> None:
    _, info = _harmonised("bach/bwv1.6", None)
    assert info["melody_part"] == {"part": 1, "part_label": "Soprano"}


def test_the_melody_part_can_be_chosen_by_index_or_label() -> None:
    by_label = _harmonised("bach/bwv1.6", None, melody_part="horn 2")[1]
    by_index = _harmonised("bach/bwv1.6", None, melody_part=0)[1]
    assert by_label["melody_part"] == by_index["melody_part"] == {"part": 0, "part_label": "Horn 2"}
    with pytest.raises(InvalidArguments, match="Soprano"):  # the error lists the parts there are
        harmonize_melody(_parsed("bach/bwv1.6", None), melody_part="Trumpet")
    with pytest.raises(InvalidArguments, match="not a part"):
        harmonize_melody(_parsed("bach/bwv1.6", None), melody_part=7)


def test_a_melody_far_below_the_soprano_keeps_four_distinct_ordered_voices_and_says_why() -> None:
    # bwv66.6's bass line (A2 to D4) as the melody: three voices cannot fit under it in their ranges. The rules of
    # motion and completeness still hold; the ranges cannot, and the result says so instead of collapsing voices.
    music, info = _harmonised("bach/bwv66.6", None, melody_part="Bass")
    assert info["melody_part"] == {"part": 3, "part_label": "Bass"}
    assert _melody(music, 0) == _melody(_parsed("bach/bwv66.6", None), 3)
    checks = info["checks"]
    assert (checks["parallel_fifths"], checks["parallel_octaves"], checks["voice_crossings"]) == (0, 0, 0)
    assert checks["incomplete_final_chord"] == 0
    assert any("soprano range" in warning for warning in info["warnings"])
    for column in _columns(music):
        assert [p.ps for p in column] == sorted((p.ps for p in column), reverse=True)
        assert len({p.ps for p in column}) >= 3  # never all voices on one pitch


# --- The checker itself, on planted faults ---------------------------------------------------------------------------


def _four_parts(*lines: str) -> stream.Score:
    score = stream.Score()
    for line in lines:
        score.insert(0, converter.parse(f"tinyNotation: 4/4 {line}"))
    return score


def test_the_checker_counts_fifths_between_inner_voices_too() -> None:
    # tinyNotation: c is C4, c' is C5, C is C3, CC is C2. Alto and tenor rise from C5 over F4 to D5 over G4: a
    # fifth, then a fifth. No other pair moves between perfect intervals (soprano and bass: E5-C3 to F5-B2).
    music = _four_parts("e'4 f'", "c'4 d'", "f4 g", "C4 BB")
    fifths = [v for v in voice_leading_violations(music) if v["rule"] == "parallel_fifths"]
    assert [(v["voices"], v["bar"]) for v in fifths] == [(["alto", "tenor"], 1)]


def test_the_checker_counts_octaves_crossing_range_spacing_and_an_incomplete_final_chord() -> None:
    # Soprano and bass rise from C5 over C3 to D5 over D3: consecutive (compound) octaves, and nothing else.
    octaves = violation_counts(voice_leading_violations(_four_parts("c'4 d'", "a4 b", "e4 f", "C4 D")))
    assert (octaves["parallel_octaves"], octaves["parallel_fifths"]) == (1, 0)
    crossed = _four_parts("c'4", "e4", "g4", "C4")  # the tenor's G4 above the alto's E4
    assert violation_counts(voice_leading_violations(crossed))["voice_crossings"] == 1
    bare = _four_parts("e'4", "c'4", "e4", "E4")  # C major's tonic with its root once and no fifth
    assert violation_counts(voice_leading_violations(bare, in_key=key.Key("C")))["incomplete_final_chord"] == 1
    full = _four_parts("e'4", "c'4", "c4", "C4")  # root tripled and the third: a complete close without its fifth
    assert violation_counts(voice_leading_violations(full, in_key=key.Key("C")))["incomplete_final_chord"] == 0
    wide = _four_parts("g'4", "f4", "c4", "CC4")  # G5 a ninth over F4; C4 two octaves over C2
    assert violation_counts(voice_leading_violations(wide))["spacing"] == 2
    high = _four_parts("a'4", "c'4", "e4", "AA4")  # the soprano's A5, above G5
    assert violation_counts(voice_leading_violations(high))["out_of_range"] == 1


def _tune(tiny: str) -> stream.Score:
    music = stream.Score()
    music.insert(0, converter.parse(f"tinyNotation: {tiny}"))
    return music


@pytest.mark.parametrize(
    ("tune", "final_chord"),
    [
        # An A minor tune with its leading tone G#, ending on A: its pitch profile alone says E major (0.53 against
        # A minor's 0.48), and it was closed on an E major chord under its A.
        ("4/4 a4 b c' e' g#2 a2 f'4 e' d' b g#2 a2", ("A", "minor")),
        # C D E F E D C ending on C, read as Bb major (0.61 against C major's 0.60): a Bb chord under the last C.
        ("4/4 c'2 d'2~ d'4 e'4 f'2~ f'2 e'2 d'1 c'1", ("C", "major")),
    ],
)
def test_a_tune_closes_on_a_tonic_chord_that_holds_its_last_note(tune: str, final_chord: tuple[str, str]) -> None:
    music, info = harmonize_melody(_tune(tune))
    last = m21chord.Chord(_columns(music)[-1])
    assert (last.root().name, last.quality) == final_chord
    assert info["key"] == " ".join(final_chord)
    assert info["checks"] == RULES_KEPT


def test_a_chromatic_melody_note_is_never_set_against_its_own_letter() -> None:
    # F#5 in a C major tune was set over IV, an F natural in the bass: the same note raised and not at once.
    music, _ = harmonize_melody(_tune("4/4 c'4 d' e' f'# g'2 a'4 g' f' e' d'2 c'1"))
    for soprano, *lower in _columns(music):
        assert not [p for p in lower if p.step == soprano.step and p.pitchClass != soprano.pitchClass], soprano
