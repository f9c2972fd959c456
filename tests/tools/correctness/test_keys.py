"""The key of real works, as a musician would check it: the key music21's profiles find, spelled as the score's key
signature writes it, with a confidence that drops when the profiles disagree, and no key at all for atonal music.

Each expectation is derived twice: from music21 run directly (its default profile, the key signature in the score),
and by hand from the score (signature, final bass note), written beside the case."""

from __future__ import annotations

import random
from functools import cache
from typing import Any

import pytest
from music21 import corpus, interval, key, note, roman, stream

from apps.tools.services.keys import key_analysis, score_key
from apps.tools.services.spelling import key_name

PROFILES = ("AardenEssen", "KrumhanslSchmuckler", "BellmanBudge", "TemperleyKostkaPayne", "SimpleWeights")


@cache
def _work(source: str) -> stream.Score:
    """Each work parsed once per module; "path#n" is the n-th tune of an ABC book. Nothing below changes it."""
    path, _, number = source.partition("#")
    return corpus.parse(path, number=int(number)) if number else corpus.parse(path)


@cache
def _analysis(source: str) -> dict[str, Any]:
    return key_analysis(_work(source))


def _signature(music: stream.Stream) -> key.KeySignature:
    return next(iter(music.recurse().getElementsByClass(key.KeySignature)))


def _music21_key_spelled_by_signature(music: stream.Score) -> str:
    """music21's own key, its tonic spelled as the signature's key of that mode when they sound alike."""
    found = music.analyze("key")
    written = _signature(music).asKey(found.mode)
    tonic = written.tonic if written.tonic.pitchClass == found.tonic.pitchClass else found.tonic
    return key_name(key.Key(tonic.name, found.mode))


# (work, the key a musician names, why). All profiles agree with the first profile on most of them.
TONAL_WORKS = [
    ("bach/bwv66.6", "F# minor", "chorale, 3 sharps, ends on an F# major chord over F#2"),
    ("bach/bwv244.10", "Ab major", "St Matthew Passion chorale, 4 flats"),
    ("bach/bwv40.8", "F minor", "chorale, 3 flats (the signature's minor), ends over F"),
    ("bach/bwv13.6", "Bb major", "chorale, 2 flats, 4 of 5 profiles (Krumhansl hears F major)"),
    ("bach/bwv354", "Bb minor", "chorale, 4 flats read as Bb Dorian, ends over Bb2: flat, as the signature"),
    ("bach/bwv139.6", "E major", "chorale, 4 sharps"),
    ("schubert/Lindenbaum", "E major", "song (voice and piano), 4 sharps"),
    ("joplin/maple_leaf_rag", "Ab major", "piano rag, 4 flats: Ab, never G#"),
    ("cpebach/h186", "F# minor", "keyboard, 3 sharps"),
    ("mozart/k155/movement2", "A major", "string quartet, 3 sharps"),
    ("beethoven/opus18no1/movement2.krn", "D minor", "Humdrum string quartet, Adagio in D minor, 1 flat"),
    ("chopin/mazurka06-2.krn", "C# minor", "Humdrum piano mazurka, 4 sharps: C#, never Db"),
    ("verdi/laDonnaEMobile", "Bb major", "aria, 2 flats"),
    ("corelli/opus3no1/1grave", "F major", "trio sonata, 1 flat"),
    ("airdsAirs/book1.abc#4", "E minor", "ABC fiddle tune, 1 sharp, ends on E"),
    ("airdsAirs/book2.abc#266", "F major", "ABC tune, 1 flat"),
]


# Every test here is transactional (tests/conftest.py), which costs ~2.5 s of database flushing per test: the works
# are checked in a loop per property, every mismatch named in one message, to stay within the suite's time budget.


def test_the_key_of_each_tonal_work_as_its_signature_spells_it() -> None:
    wrong = []
    for work, expected, why in TONAL_WORKS:
        result = _analysis(work)
        derived = _music21_key_spelled_by_signature(_work(work))
        names = [result["key"], *(a["key"] for a in result["alternatives"])]
        names += [answer["key"] for answer in result["by_algorithm"].values()]
        if (result["key"], result["tonic"], derived) != (expected, expected.split()[0], expected):
            wrong.append(f"{work} ({why}): {result['key']}, music21 and the signature say {derived}")
        if result["warning"] is not None:
            wrong.append(f"{work}: {result['warning']}")
        if any("-" in name for name in names):  # flats as a musician writes them
            wrong.append(f"{work}: music21's flat spelling in {names}")
    assert not wrong, "\n".join(wrong)


def test_agreement_and_margin_are_music21s_own_figures() -> None:
    for work in ("bach/bwv66.6", "bach/bwv13.6", "chopin/mazurka06-2.krn", "joplin/maple_leaf_rag"):
        music = _work(work)
        found = [music.analyze(profile) for profile in PROFILES]
        first = found[0]
        agreeing = sum((f.tonic.pitchClass, f.mode) == (first.tonic.pitchClass, first.mode) for f in found)
        margin = first.correlationCoefficient - first.alternateInterpretations[0].correlationCoefficient

        result = _analysis(work)

        assert result["agreement"] == f"{agreeing} of 5", work
        assert result["agreement_share"] == pytest.approx(agreeing / 5), work
        assert result["correlation"] == pytest.approx(first.correlationCoefficient, abs=0.001), work
        assert result["margin"] == pytest.approx(margin, abs=0.001), work
        assert 0.0 <= result["confidence"] <= 1.0, work


def test_confidence_falls_with_agreement() -> None:
    # bwv66.6: all five profiles name F# minor, by a margin of 0.16. chopin/mazurka06-2: 3 of 5 (the others hear
    # G# major and G# minor), by 0.07. bwv13.6: 4 of 5.
    unanimous, most, split = (_analysis(w) for w in ("bach/bwv66.6", "bach/bwv13.6", "chopin/mazurka06-2.krn"))
    assert unanimous["confidence"] > most["confidence"] > split["confidence"]
    assert unanimous["confidence"] > 0.85
    assert split["confidence"] < 0.5


def test_a_close_call_is_flagged_not_sold_as_certain() -> None:
    # bwv8.6 is in E major (4 sharps, final chord over E2), but its dominant-heavy cadences make the first profile
    # hear B major: only 2 of 5 profiles say so, 3 say E major.
    music = _work("bach/bwv8.6")
    assert music.parts[-1].recurse().notes[-1].pitches[0].name == "E"

    result = _analysis("bach/bwv8.6")

    assert result["agreement"] == "2 of 5"
    assert result["warning"] and "uncertain" in result["warning"]
    assert result["confidence"] < 0.5
    assert "E major" in {answer["key"] for answer in result["by_algorithm"].values()}


def _twelve_tone_piece(seed: int) -> stream.Score:
    """A row and its retrograde, 6 times over, in equal quarter notes and random octaves: all twelve pitch classes
    exactly equally often, which no key profile fits."""
    rng = random.Random(seed)
    row = list(range(12))
    rng.shuffle(row)
    part = stream.Part()
    for repeat in range(6):
        for pitch_class in row if repeat % 2 == 0 else row[::-1]:
            part.append(note.Note(60 + pitch_class + rng.choice([-12, 0, 12])))
    return stream.Score([part])


def test_atonal_music_has_no_clear_key() -> None:
    for work in ("schoenberg/opus19/movement2", "schoenberg/opus19/movement6", "webern/webern_dormi_jesu_op_16_no_2"):
        _assert_no_clear_key(_analysis(work), work)
    _assert_no_clear_key(key_analysis(_twelve_tone_piece(7)), "a twelve-tone row")


def _assert_no_clear_key(result: dict[str, Any], work: str) -> None:
    assert (result["key"], result["tonic"], result["mode"]) == (None, None, None), work
    assert result["confidence"] == 0.0, work
    assert "No clear key" in result["warning"], work
    assert result["best_guess"], work  # what the profile would have said, for the curious


# Transposing bwv66.6 (F# minor, 3 sharps): music21 transposes the key signature with the notes.
TRANSPOSITIONS = [
    ("M2", 5, "G# minor"),  # up a major second: 5 sharps
    ("M6", 6, "D# minor"),  # 6 sharps: D# minor, never Eb minor
    ("d7", -6, "Eb minor"),  # the same sounds in 6 flats: Eb minor
    ("-M2", 1, "E minor"),  # down a major second: 1 sharp
]


@cache
def _transposed(interval_name: str) -> stream.Score:
    return _work("bach/bwv66.6").transpose(interval_name)


def test_a_transposed_chorale_is_in_the_transposed_key_spelled_by_its_signature() -> None:
    original = _analysis("bach/bwv66.6")
    for interval_name, sharps, expected in TRANSPOSITIONS:
        moved = _transposed(interval_name)
        assert _signature(moved).sharps == sharps, interval_name
        tonic = interval.Interval(interval_name).transposePitch(_work("bach/bwv66.6").analyze("key").tonic)

        result = key_analysis(moved)

        assert result["key"] == expected == key_name(key.Key(tonic.name, "minor")), interval_name
        assert (result["confidence"], result["agreement"]) == (original["confidence"], original["agreement"])


def test_roman_numerals_against_the_spelled_key_survive_transposition() -> None:
    # score_key is what the harmony analysis reads Roman numerals against: a Gb-minor tonic for a piece in 6 sharps
    # would turn every i into a #vii.
    def figures(music: stream.Score) -> list[str]:
        in_key = score_key(music)
        chords = music.chordify().recurse().getElementsByClass("Chord")
        return [roman.romanNumeralFromChord(c, in_key).figure for c in list(chords)[:16]]

    original = figures(_work("bach/bwv66.6"))
    assert (original[0], original[2]) == ("III", "i")  # A major then F# minor, as the chorale opens
    for interval_name in ("M2", "M6", "d7"):
        assert figures(_transposed(interval_name)) == original, interval_name


def test_the_transpose_tool_then_key_analysis_names_the_new_signatures_key(chorale: Any, alice: Any, call: Any) -> None:
    for interval_name, expected, signature in [
        ("M6", "D# minor", "F# major / D# minor"),
        ("d7", "Eb minor", "Gb major / Eb minor"),
    ]:
        call(
            alice, "transpose_score", score_id="chorale", interval=interval_name, new_score_id=f"moved-{interval_name}"
        )
        result = call(alice, "key_analysis", score_id=f"moved-{interval_name}")
        assert (result["key"], result["key_signature_keys"]) == (expected, signature)
