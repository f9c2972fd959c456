"""Analysis tools on real music: facts that music21 itself confirms on the bundled corpus."""

from __future__ import annotations

from typing import Any

import pytest
from music21 import corpus, pitch

from apps.tools.services import voiceleading

TWO_VOICES_WITH_PARALLEL_FIFTHS = "\n".join(
    [
        "4/4 e'4 d' e' f' g'1",  # upper voice: F5 -> G5 into measure 2
        "4/4 c'4 b c' b- c'1",  # lower voice: Bb4 -> C5, a fifth below all the way
    ]
)


def test_bwv66_6_is_in_f_sharp_minor_with_every_profile(chorale: Any, alice: Any, call: Any) -> None:
    music = corpus.parse("bach/bwv66.6")
    found = music.analyze("key")
    margin = found.correlationCoefficient - found.alternateInterpretations[0].correlationCoefficient
    result = call(alice, "key_analysis", score_id="chorale")
    assert result["key"] == "F# minor"
    assert result["agreement"] == "5 of 5"
    assert result["margin"] == pytest.approx(margin, abs=0.001)  # 0.163 over A major
    # Every profile agrees (half the confidence), with 0.163 of the 0.2 margin that counts as decisive.
    assert result["confidence"] == pytest.approx(0.5 + 0.5 * margin / 0.2, abs=0.001)
    assert result["alternatives"][0]["key"] == "A major"
    assert set(result["by_algorithm"]) == {"aarden", "krumhansl", "bellman", "temperley", "simple"}
    assert (result["key_signature"], result["key_signature_keys"]) == ("3 sharps", "A major / F# minor")
    assert result["warning"] is None


def test_one_algorithm_can_be_asked_for(chorale: Any, alice: Any, call: Any) -> None:
    found = corpus.parse("bach/bwv66.6").analyze("KrumhanslSchmuckler")
    result = call(alice, "key_analysis", score_id="chorale", algorithm="krumhansl")
    assert result["algorithm"] == "krumhansl"
    assert list(result["by_algorithm"]) == ["krumhansl"]
    assert result["correlation"] == pytest.approx(found.correlationCoefficient, abs=0.001)  # 0.815
    assert result["agreement"] == "1 of 1"


@pytest.mark.parametrize("work", ["bach/bwv103.6", "bach/bwv111.6", "bach/bwv119.9", "bach/bwv120.6"])
def test_key_covers_the_whole_score_not_the_first_part(alice: Any, call: Any, work: str) -> None:
    # In each of these chorales the soprano alone suggests another key than the four voices together.
    music = corpus.parse(work)
    whole, soprano = music.analyze("key"), music.parts[0].analyze("key")
    assert (whole.tonic.pitchClass, whole.mode) != (soprano.tonic.pitchClass, soprano.mode)

    call(alice, "import_score", score_id="work", source=work, source_type="corpus")
    result = call(alice, "key_analysis", score_id="work")
    assert (pitch.Pitch(result["tonic"].replace("b", "-")).pitchClass, result["mode"]) == (
        whole.tonic.pitchClass,
        whole.mode,
    )


def test_chords_have_measure_beat_pitches_and_roman_numerals(chorale: Any, alice: Any, call: Any) -> None:
    result = call(alice, "chord_analysis", score_id="chorale")
    assert result["key"] == "F# minor"
    first = result["chords"][0]
    assert (first["measure"], first["beat"], first["roman_numeral"]) == (0, 4.0, "III")
    assert first["pitches"] == ["A3", "E4", "C#5"]
    cadence_chord = next(c for c in result["chords"] if (c["measure"], c["beat"]) == (3, 3.0))
    assert cadence_chord["roman_numeral"] == "i"
    assert cadence_chord["pitches"][0] == "F#2"
    # chordify cuts bwv66.6 into 51 slices; its passing notes and suspensions are not chords of their own.
    assert result["chord_count"] == len(result["chords"]) < 51


def test_chord_limit_truncates_and_says_so(chorale: Any, alice: Any, call: Any) -> None:
    result = call(alice, "chord_analysis", score_id="chorale", limit=5)
    assert len(result["chords"]) == 5
    assert result["truncated"] is True
    assert result["chord_count"] > 5


def test_harmony_analysis_honours_its_argument(chorale: Any, alice: Any, call: Any) -> None:
    roman = call(alice, "harmony_analysis", score_id="chorale", analysis_type="roman")
    functional = call(alice, "harmony_analysis", score_id="chorale", analysis_type="functional")
    cadences = call(alice, "harmony_analysis", score_id="chorale", analysis_type="cadences")
    # A major (III), F# minor (i), then E major over G# leading to A: the dominant of III.
    assert roman["figures"].startswith("III i V6/III III")
    assert [f["function"] for f in functional["functions"][:3]] == ["tonic", "tonic", "dominant of III"]
    assert sum(functional["counts"].values()) == len(functional["functions"]) == len(roman["progression"])
    assert "progression" not in cadences and "functions" not in cadences


def test_cadences_of_bwv66_6_at_its_fermatas(chorale: Any, alice: Any, call: Any) -> None:
    result = call(alice, "harmony_analysis", score_id="chorale", analysis_type="cadences")
    by_measure = {c["measure"]: c for c in result["cadences"]}
    # Six phrases, each ending at a fermata on beat 3.
    assert sorted(by_measure) == [1, 2, 3, 5, 7, 9]
    assert {c["beat"] for c in result["cadences"]} == {3.0}
    assert (by_measure[3]["kind"], by_measure[3]["key"], by_measure[3]["chords"]) == (
        "perfect authentic",
        "F# minor",
        ["V7", "i"],
    )
    assert (by_measure[7]["kind"], by_measure[7]["variant"], by_measure[7]["chords"]) == (
        "half",
        "phrygian",
        ["iv6", "V"],
    )
    assert (by_measure[2]["kind"], by_measure[2]["key"]) == ("perfect authentic", "A major")  # the turn to A major
    assert by_measure[2]["chords_in_home_key"] == ["V7/III", "III"]


def test_a_planted_parallel_fifth_is_found_at_its_measure(alice: Any, call: Any) -> None:
    call(alice, "import_score", score_id="fifths", source=TWO_VOICES_WITH_PARALLEL_FIFTHS, source_type="tinynotation")
    result = call(alice, "voice_leading_analysis", score_id="fifths")
    assert result["summary"] == {"parallel_fifths": 1, "parallel_octaves": 0, "doublings": 0, "voice_crossings": 0}
    fifth = result["parallel_fifths"][0]
    assert (fifth["measure"], fifth["beat"]) == (2, 1.0)
    assert fifth["from"] == {"upper": "F5", "lower": "Bb4"}
    assert fifth["to"] == {"upper": "G5", "lower": "C5"}
    assert (
        [fifth["upper"], fifth["lower"]]
        == result["parts"]
        == [
            {"part": 0, "part_label": "Part 1"},
            {"part": 1, "part_label": "Part 2"},
        ]
    )


def test_parallel_octaves_and_crossings_are_found(alice: Any, call: Any) -> None:
    source = "4/4 c'4 d' f' c\n4/4 c4 d e e'"  # octaves into beat 2, the voices cross on beat 4
    call(alice, "import_score", score_id="octaves", source=source, source_type="tinynotation")
    result = call(alice, "voice_leading_analysis", score_id="octaves")
    assert [(o["measure"], o["beat"], o["to"]) for o in result["parallel_octaves"]] == [
        (1, 2.0, {"upper": "D5", "lower": "D4"})
    ]
    assert [(c["measure"], c["beat"]) for c in result["voice_crossings"]] == [(1, 4.0)]
    assert result["doublings"] == []


def test_a_line_doubled_in_octaves_is_a_doubling_not_five_errors(alice: Any, call: Any) -> None:
    source = "4/4 c'4 d' e' f' g'1\n4/4 c4 d e f g1"  # the same line an octave apart, five notes
    call(alice, "import_score", score_id="doubled", source=source, source_type="tinynotation")
    result = call(alice, "voice_leading_analysis", score_id="doubled")
    assert result["summary"]["parallel_octaves"] == 0
    [doubling] = result["doublings"]
    assert doubling["interval"] == "octave"
    assert (doubling["start"], doubling["end"]) == ({"measure": 1, "beat": 1.0}, {"measure": 2, "beat": 1.0})
    assert (doubling["notes"], doubling["parallel_octaves"]) == (5, 4)


def test_the_first_voice_leading_call_on_a_new_score_finds_its_part_lines_ready(
    alice: Any, call: Any, monkeypatch: Any
) -> None:
    """Each part's line is worked out once the import has been answered, so the first voice-leading (or pattern)
    call on the score does not wait for it."""
    source = "4/4 e'4 f' g' a' b'1\n4/4 c'4 d' c' d' g1"  # no other test's score: nothing of it is held already
    call(alice, "import_score", score_id="new", source=source, source_type="tinynotation")

    def worked_out_again(part: Any) -> Any:
        raise AssertionError("a part's line was worked out again")

    monkeypatch.setattr(voiceleading, "_line", worked_out_again)
    result = call(alice, "voice_leading_analysis", score_id="new")
    assert [(p["measure"], p["beat"], p["to"]) for p in result["parallel_fifths"]] == [
        (1, 4.0, {"upper": "A5", "lower": "D5"})
    ]


def test_bach_writes_no_parallel_fifths_in_bwv66_6(chorale: Any, alice: Any, call: Any) -> None:
    result = call(alice, "voice_leading_analysis", score_id="chorale")
    assert [p["part_label"] for p in result["parts"]] == ["Soprano", "Alto", "Tenor", "Bass"]
    assert result["summary"]["parallel_fifths"] == 0
    assert result["summary"]["parallel_octaves"] == 0


def test_a_transposed_motif_is_found_in_both_places(alice: Any, call: Any) -> None:
    call(alice, "import_score", score_id="motif", source="4/4 c4 d e c f g a f g1", source_type="tinynotation")
    result = call(alice, "pattern_recognition", score_id="motif", pattern_type="melodic", min_length=4)
    motif = next(p for p in result["melodic_patterns"] if p["intervals"] == [2, 2, -4])
    assert motif["occurrences"] == 2
    assert motif["transposed"] is True
    assert [(loc["measure"], loc["notes"]) for loc in motif["locations"]] == [
        (1, ["C4", "D4", "E4", "C4"]),
        (2, ["F4", "G4", "A4", "F4"]),
    ]
    assert "rhythmic_patterns" not in result


def test_a_repeated_rhythm_is_found(alice: Any, call: Any) -> None:
    call(alice, "import_score", score_id="rhythm", source="4/4 c8 c d4 e2 g8 f e4 d2", source_type="tinynotation")
    result = call(alice, "pattern_recognition", score_id="rhythm", pattern_type="rhythmic", min_length=4)
    best = result["rhythmic_patterns"][0]
    assert best["durations"] == [0.5, 0.5, 1.0, 2.0]
    assert [loc["measure"] for loc in best["locations"]] == [1, 2]
    assert "melodic_patterns" not in result


def test_phrase_structure_follows_the_fermatas(chorale: Any, alice: Any, call: Any) -> None:
    result = call(alice, "pattern_recognition", score_id="chorale")
    assert result["phrase_structure"]["count"] == 6
    assert [p["end"]["measure"] for p in result["phrases"]] == [1, 2, 3, 5, 7, 9]
    assert result["phrases"][0]["start"] == {"measure": 0, "beat": 4.0}
    assert result["phrases"][-1]["final_pitch"] == "F#4"


def test_analysis_leaves_the_cached_score_unchanged(chorale: Any, alice: Any, call: Any) -> None:
    before = call(alice, "score_info", score_id="chorale")
    for tool, extra in [
        ("key_analysis", {}),
        ("chord_analysis", {}),
        ("harmony_analysis", {"analysis_type": "cadences"}),
        ("voice_leading_analysis", {}),
        ("pattern_recognition", {}),
    ]:
        call(alice, tool, score_id="chorale", **extra)
    assert call(alice, "score_info", score_id="chorale") == before
