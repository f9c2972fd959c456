"""Voice leading and patterns on real works, each answer derived without the service: music21's own
`VoiceLeadingQuartet` on the score's verticalities (music21.tree), music21's intervals on the notes the service
points at, or theory worked out beside the case. Each corpus work is parsed once for the module."""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from fractions import Fraction
from typing import Any

import pytest
from music21 import converter, corpus, interval, note, pitch, stream, tree, voiceLeading

from apps.tools.services.patterns import pattern_recognition
from apps.tools.services.summary import part_label
from apps.tools.services.voiceleading import voice_leading_analysis


@functools.cache
def _work(path: str) -> stream.Score:
    return corpus.parse(path)


def _music21_parallels(score: stream.Score) -> Counter[tuple[str, int, int, int]]:
    """(kind, upper part, lower part, measure) of every parallel fifth and octave/unison music21 finds between
    consecutive verticalities. Contrary 'parallels' (music21's antiParallel motion) are not parallel motion and the
    tool leaves them out; grace notes (no duration) are ornaments, not voice-leading steps."""
    parts = list(score.parts)
    spans = tree.fromStream.asTimespans(score, flatten=True, classList=(note.Note,))
    found: Counter[tuple[str, int, int, int]] = Counter()
    for vertical in spans.iterateVerticalities():
        for (a0, a1), (b0, b1) in vertical.getAllVoiceLeadingQuartets(
            includeRests=False, includeOblique=False, returnObjects=False
        ):
            if any(span.element.quarterLength == 0 for span in (a0, a1, b0, b1)):
                continue
            upper, lower = parts.index(a0.part), parts.index(b0.part)
            if upper > lower:
                (a0, a1), (b0, b1), upper, lower = (b0, b1), (a0, a1), lower, upper
            quartet = voiceLeading.VoiceLeadingQuartet(a0.element, a1.element, b0.element, b1.element)
            if quartet.antiParallelMotion():
                continue
            if quartet.parallelFifth():
                found[("fifths", upper, lower, a1.element.measureNumber)] += 1
            elif quartet.parallelUnisonOrOctave():
                found[("octaves", upper, lower, a1.element.measureNumber)] += 1
    return found


# Works of one line per part (no chords), where music21's verticalities and the tool should see the same motions.
SINGLE_LINE_WORKS = [
    "bach/bwv66.6",  # chorale: no parallels at all
    "bach/bwv1.6",  # chorale with a horn descant: two fifths
    "bach/bwv4.8",  # chorale whose only "fifths" are by contrary motion
    "bach/bwv13.6",  # the same
    "mozart/k155/movement2",  # string quartet, triplets and violins in octaves
    "haydn/opus74no1/movement3",  # string quartet with grace notes and a doubled passage
    "monteverdi/madrigal.3.1",  # five-voice madrigal
    "corelli/opus3no1/1grave",  # trio sonata
]


@pytest.mark.parametrize("work", SINGLE_LINE_WORKS)
def test_parallels_are_the_ones_music21_finds(work: str) -> None:
    score = _work(work)
    result = voice_leading_analysis(score)
    expected = _music21_parallels(score)

    def found(kind: str, findings: list[dict[str, Any]]) -> Counter[tuple[str, int, int, int]]:
        return Counter((kind, f["upper"]["part"], f["lower"]["part"], f["measure"]) for f in findings)

    fifths = found("fifths", result["parallel_fifths"])
    assert fifths == Counter({k: n for k, n in expected.items() if k[0] == "fifths"})
    # Every parallel octave music21 sees is either an error or inside a reported doubling, never both, never lost.
    octaves = [k for k, n in expected.items() if k[0] == "octaves" for _ in range(n)]
    inside = sum(d["parallel_octaves"] for d in result["doublings"])
    assert len(result["parallel_octaves"]) + inside == len(octaves)
    errors = found("octaves", result["parallel_octaves"])
    assert not errors - Counter(octaves)

    assert result["parts"] == [{"part": i, "part_label": part_label(p, i)} for i, p in enumerate(score.parts)]
    for finding in result["parallel_fifths"] + result["parallel_octaves"]:
        assert finding["upper"]["part"] < finding["lower"]["part"]
        assert "-" not in finding["from"]["upper"] + finding["from"]["lower"]  # Bb4, never B-4


def test_bach_writes_no_parallel_fifths_or_octaves_in_bwv66_6() -> None:
    result = voice_leading_analysis(_work("bach/bwv66.6"))
    assert result["summary"]["parallel_fifths"] == result["summary"]["parallel_octaves"] == 0
    assert result["doublings"] == []


def _pitch(name: str) -> pitch.Pitch:
    """A pitch as the tool spells it (`Bb4`), read back into music21 (`B-4`)."""
    return pitch.Pitch(name[0] + name[1:].replace("b", "-"))


def test_the_horn_descant_of_bwv1_6_makes_the_fifths_not_the_choir() -> None:
    score = _work("bach/bwv1.6")
    result = voice_leading_analysis(score)
    assert score.parts[0].partName == "Horn 2"
    for fifth in result["parallel_fifths"]:
        assert fifth["upper"] == {"part": 0, "part_label": "Horn 2"}
        # Both intervals of the pair are perfect fifths (simple or compound) reached in similar motion.
        before, after = (
            interval.Interval(_pitch(pair["lower"]), _pitch(pair["upper"])) for pair in (fifth["from"], fifth["to"])
        )
        assert before.semiSimpleName == after.semiSimpleName == "P5"


def test_triplets_make_no_false_fifth_in_mozart_k155_ii_bar_36() -> None:
    score = _work("mozart/k155/movement2")
    result = voice_leading_analysis(score)
    assert [f["measure"] for f in result["parallel_fifths"]] == [12]

    # Bar 36: violin I's last triplet sixteenth C#5 (at 11/6) goes to B4 on beat 3 while the viola goes A3 -> E3: a
    # tenth into a twelfth, not fifths. Compared as floats the earlier E5 seemed still to sound at 11/6.
    violin = list(score.parts[0].measure(36).notes)
    viola = list(score.parts[2].measure(36).notes)
    assert (violin[11].nameWithOctave, violin[11].offset, violin[12].nameWithOctave) == ("C#5", Fraction(11, 6), "B4")
    assert [n.nameWithOctave for n in viola[1:]] == ["A3", "E3"]
    assert not voiceLeading.VoiceLeadingQuartet(violin[11], violin[12], viola[1], viola[2]).parallelFifth()

    # Bar 12 beat 3 is a real one: B5/E4 -> F#5/B3, both down, both compound fifths.
    [fifth] = result["parallel_fifths"]
    assert (fifth["beat"], fifth["upper"]["part_label"], fifth["lower"]["part_label"]) == (3.0, "Violin I", "Viola")
    assert (fifth["from"], fifth["to"]) == ({"upper": "B5", "lower": "E4"}, {"upper": "F#5", "lower": "B3"})


def test_violins_in_octaves_in_k155_ii_are_a_doubling_not_twenty_errors() -> None:
    score = _work("mozart/k155/movement2")
    result = voice_leading_analysis(score)
    doubling = next(
        d for d in result["doublings"] if (d["upper"]["part"], d["lower"]["part"], d["start"]["measure"]) == (0, 1, 17)
    )
    assert doubling["interval"] == "octave"
    # Read with music21: in bars 17-18 violin II plays violin I's notes an octave lower, note for note.
    first = [n for m in (17, 18) for n in score.parts[0].measure(m).notes]
    second = [n for m in (17, 18) for n in score.parts[1].measure(m).notes]
    assert [(n.name, n.pitch.ps - 12) for n in first] == [(n.name, n.pitch.ps) for n in second]
    assert doubling["notes"] == len(first) == 21
    assert not [o for o in result["parallel_octaves"] if o["upper"]["part"] == 0 and o["lower"]["part"] == 1]


def _constructed(text: str) -> stream.Score:
    return stream.Score([converter.parse(f"tinyNotation: {text}")])


def test_a_diatonic_sequence_is_one_pattern_with_its_own_semitones() -> None:
    # C D E C | D E F D | E F G E: a step up, a step up, a third down, three times a step higher in C major. The
    # semitones differ (E-F and B-C are half steps): 2 2 -4, 2 1 -3, 1 2 -3.
    result = pattern_recognition(_constructed("4/4 c4 d e c d e f d e f g e c1"), pattern_type="melodic", min_length=4)
    sequence = next(p for p in result["melodic_patterns"] if p["steps"] == [1, 1, -2])
    assert sequence["kind"] == "diatonic sequence"
    assert sequence["occurrences"] == 3
    assert [(loc["measure"], loc["beat"], loc["intervals"]) for loc in sequence["locations"]] == [
        (1, 1.0, [2, 2, -4]),
        (2, 1.0, [2, 1, -3]),
        (3, 1.0, [1, 2, -3]),
    ]
    assert {(loc["part"], loc["part_label"]) for loc in sequence["locations"]} == {(0, "Part 1")}


def test_a_real_transposition_is_exact() -> None:
    # C D E C and G A B G: whole tone, whole tone, major third down both times.
    result = pattern_recognition(_constructed("4/4 c4 d e c g a b g c'1"), pattern_type="melodic", min_length=4)
    motif = next(p for p in result["melodic_patterns"] if p["steps"] == [1, 1, -2])
    assert (motif["kind"], motif["transposed"], motif["intervals"]) == ("exact", True, [2, 2, -4])


def test_the_c_major_prelude_figure_is_found_as_a_diatonic_sequence() -> None:
    # WTC I, Prelude in C (BWV 846): the right hand's broken-chord figure repeats bar after bar on other degrees.
    score = _work("bach/bwv846")
    result = pattern_recognition(score, pattern_type="melodic", min_length=5)
    sequences = [p for p in result["melodic_patterns"] if p["kind"] == "diatonic sequence"]
    assert sequences
    pattern = sequences[0]
    assert pattern["occurrences"] >= 4
    semitones = set()
    for location in pattern["locations"]:
        # The notes the tool names are the part's notes from that bar and beat, read with music21.
        part = score.parts[location["part"]]
        notes = [
            n
            for n in part.recurse().notes
            if (n.measureNumber, round(float(n.beat), 3)) >= (location["measure"], location["beat"])
        ][: pattern["length"]]
        assert [n.nameWithOctave.replace("-", "b") for n in notes] == location["notes"]
        steps = [interval.Interval(a, b).generic.directed for a, b in itertools.pairwise(notes)]
        # music21's generic interval counts both ends (2 = a second): one more than the scale steps in between.
        assert [s - 1 if s > 0 else s + 1 for s in steps] == pattern["steps"]
        semitones.add(tuple(interval.Interval(a, b).semitones for a, b in itertools.pairwise(notes)))
    assert len(semitones) > 1  # the same steps with other semitones: a tonal, not a real, sequence


ABC_TUNE = "essenFolksong/altdeu10"  # Das Hildebrandslied, the first tune of the file


@functools.cache
def _abc_text() -> str:
    with open(corpus.getWork(ABC_TUNE), encoding="latin-1") as handle:
        tunes = [t for t in handle.read().split("\n\n") if t.strip().startswith("X:")]
    return tunes[0].strip() + "\n"


def _note_index(part: stream.Part) -> dict[tuple[int, float], int]:
    return {(n.measureNumber, round(float(n.beat), 3)): i for i, n in enumerate(part.stripTies().flatten().notes)}


def test_folk_tune_rhythms_are_maximal_non_overlapping_and_not_uniform(alice: Any, call: Any) -> None:
    call(alice, "import_score", score_id="tune", source=_abc_text(), source_type="abc")
    result = call(alice, "pattern_recognition", score_id="tune", pattern_type="rhythmic")
    tune = converter.parse(_abc_text(), format="abc")
    index = _note_index(tune.parts[0])
    durations = [float(n.quarterLength) for n in tune.parts[0].stripTies().flatten().notes]
    assert result["rhythmic_patterns"]
    for pattern in result["rhythmic_patterns"]:
        assert len(set(pattern["durations"])) > 1  # runs of one value are left out unless asked
        starts = [index[(loc["measure"], loc["beat"])] for loc in pattern["locations"]]
        for start in starts:  # what the tool names is what music21 reads there
            assert durations[start : start + pattern["length"]] == pattern["durations"]
        # Occurrences of one pattern never overlap: each starts after the previous one ended.
        assert all(b >= a + pattern["length"] for a, b in itertools.pairwise(sorted(starts)))
        assert {(loc["part"], loc["part_label"]) for loc in pattern["locations"]} == {(0, "Part 1")}


def test_uniform_rhythms_only_when_asked() -> None:
    # Four-four in plain quarters with one dotted figure: without asking only the dotted figure is a pattern.
    score = _constructed("4/4 c4 d e f g a b c' c'4. b8 a4 g f e d c c4. d8 e4 f")
    plain = pattern_recognition(score, pattern_type="rhythmic", min_length=3)
    assert plain["rhythmic_patterns"]
    assert all(len(set(p["durations"])) > 1 for p in plain["rhythmic_patterns"])
    asked = pattern_recognition(score, pattern_type="rhythmic", min_length=3, uniform_rhythms=True)
    assert any(set(p["durations"]) == {1.0} for p in asked["rhythmic_patterns"])


def test_voice_leading_through_the_tool_names_parts_and_bars(alice: Any, call: Any) -> None:
    call(alice, "import_score", score_id="k155", source="mozart/k155/movement2", source_type="corpus")
    result = call(alice, "voice_leading_analysis", score_id="k155")
    assert [p["part_label"] for p in result["parts"]] == ["Violin I", "Violin II", "Viola", "Cello"]
    assert result["summary"]["parallel_fifths"] == 1
    assert all(isinstance(d["start"]["measure"], int) for d in result["doublings"])
