"""score_info's summary of a parsed score: what a reader of the answer checks against the notation."""

from typing import Any

from music21 import chord, converter, corpus, key, meter, note, stream

from apps.tools.services.summary import part_label, part_labels, score_summary


def _measure(number: int, *elements: object) -> stream.Measure:
    measure = stream.Measure(number=number)
    for element in elements:
        measure.append(element)
    return measure


def test_counts_ranges_and_signatures_over_every_part_in_the_order_written() -> None:
    upper = stream.Part(id="upper")
    upper.partName = "Soprano"
    upper.append(
        _measure(
            1,
            key.KeySignature(2),
            meter.TimeSignature("3/4"),
            chord.Chord(["C4", "E4", "G4"], quarterLength=2),
            note.Note("D5"),
        )
    )
    upper.append(_measure(2, key.KeySignature(-1), meter.TimeSignature("6/8"), note.Note("D5", quarterLength=3)))
    lower = stream.Part(id="lower")
    lower.append(_measure(1, note.Note("A2", quarterLength=3)))
    lower.append(_measure(2, note.Rest(quarterLength=3)))
    score = stream.Score([upper, lower])

    summary = score_summary(score)

    assert [(row["part"], row["part_label"], row["measures"], row["notes"]) for row in summary["parts"]] == [
        (0, "Soprano", 2, 3),  # the chord is one note event
        (1, "lower", 2, 1),  # the rest is none; a part without a name goes by the id given to it
    ]
    assert (summary["parts_count"], summary["measures"], summary["notes"]) == (2, 2, 4)
    assert (summary["lowest_pitch"], summary["highest_pitch"]) == ("A2", "D5")
    assert summary["key_signatures"] == ["2 sharps", "1 flat"]
    assert summary["key_signature_keys"] == ["D major / B minor", "F major / D minor"]
    assert (summary["bars"], summary["first_bar"], summary["last_bar"], summary["pickup"]) == (2, 1, 2, False)
    assert summary["time_signatures"] == ["3/4", "6/8"]
    assert summary["duration_quarters"] == 6.0


def test_a_score_without_parts_is_one_part() -> None:
    score = stream.Score()
    score.append([meter.TimeSignature("2/4"), note.Note("G3"), note.Note("B-4"), note.Rest()])

    summary = score_summary(score)

    assert [(row["name"], row["notes"]) for row in summary["parts"]] == [("Part 1", 2)]
    assert (summary["lowest_pitch"], summary["highest_pitch"]) == ("G3", "Bb4")  # a flat as a musician writes it
    assert summary["time_signatures"] == ["2/4"]
    assert summary["key_signatures"] == []


def test_parts_without_names_are_numbered_by_place_never_by_object_id() -> None:
    # tinyNotation parts have no name, and music21 gives each the Python id of the object as its `id`.
    score = stream.Score([converter.parse("tinyNotation: 4/4 c4 d e f"), converter.parse("tinyNotation: 4/4 C1")])
    assert all(isinstance(part.id, int) for part in score.parts)

    rows = score_summary(score)["parts"]

    assert [(row["part"], row["part_label"]) for row in rows] == [(0, "Part 1"), (1, "Part 2")]


def test_an_abc_tune_is_part_1() -> None:
    # ABC tunes carry no part names either; "I'll Touzle your Kurchy" from Aird's Airs, book 1.
    tune = corpus.parse("airdsAirs/book1.abc", number=4)
    assert isinstance(tune.parts[0].id, int)

    assert [(row["part"], row["part_label"]) for row in score_summary(tune)["parts"]] == [(0, "Part 1")]
    assert part_label(tune.parts[0], 0) == "Part 1"


def test_parts_sharing_a_name_are_numbered_in_score_order() -> None:
    # Palestrina's Agnus Dei (Humdrum) has two parts named Tenor.
    agnus = corpus.parse("palestrina/Agnus_01.krn")
    assert [part.partName for part in agnus.parts] == ["Soprano", "Alto", "Tenor", "Tenor", "Bass"]

    expected = ["Soprano", "Alto", "Tenor 1", "Tenor 2", "Bass"]
    assert part_labels(agnus) == expected
    assert [part_label(part, index) for index, part in enumerate(agnus.parts)] == expected
    assert [row["part_label"] for row in score_summary(agnus)["parts"]] == expected


def test_bars_are_counted_as_printed_a_pickup_apart() -> None:
    # bwv66.6 opens with a one-beat pickup (measure 0) and ends at bar 9: ten measure objects, nine bars.
    chorale = corpus.parse("bach/bwv66.6")
    numbers = [m.number for m in chorale.parts[0].getElementsByClass(stream.Measure)]
    assert (numbers[0], numbers[-1], len(numbers)) == (0, 9, 10)

    summary = score_summary(chorale)

    assert (summary["measures"], summary["bars"], summary["first_bar"], summary["last_bar"]) == (10, 9, 1, 9)
    assert summary["pickup"] is True
    assert summary["key_signature_keys"] == ["A major / F# minor"]


def test_score_info_lists_each_part_by_index_and_label(alice: Any, call: Any) -> None:
    call(alice, "import_score", score_id="duet", source="4/4 c'2 d'2 e'1\n4/4 B-2 g2 a1", source_type="tinynotation")

    info = call(alice, "score_info", score_id="duet")

    assert [(row["part"], row["part_label"]) for row in info["parts"]] == [(0, "Part 1"), (1, "Part 2")]
    assert (info["bars"], info["pickup"]) == (2, False)
    assert (info["lowest_pitch"], info["highest_pitch"]) == ("Bb3", "E5")  # tinyNotation's B-2: a Bb3 half note


def test_pitch_ranges_stored_with_music21s_flats_are_respelled_by_the_migration() -> None:
    import importlib

    migration = importlib.import_module("apps.tools.migrations.0002_pitch_ranges_spelled")
    assert [migration._spelled(name) for name in ("B-4", "E--2", "F#5", "C4", "")] == ["Bb4", "Ebb2", "F#5", "C4", ""]


def test_the_keys_of_a_signature_are_those_music21_names_for_it() -> None:
    from music21 import key

    from apps.tools.services.spelling import key_name, key_signature_keys

    for sharps in range(-9, 10):
        signature = key.KeySignature(sharps)
        expected = f"{key_name(signature.asKey('major'))} / {key_name(signature.asKey('minor'))}"
        assert key_signature_keys(sharps) == expected, sharps
    assert key_signature_keys(6) == "F# major / D# minor"


def test_a_lead_sheets_chord_symbols_are_not_counted_as_its_notes() -> None:
    summary = score_summary(corpus.parse("leadSheet/fosterBrownHair"))  # 95 notes and 40 chord symbols above
    assert (summary["notes"], summary["lowest_pitch"], summary["highest_pitch"]) == (95, "C4", "F5")


def test_a_full_first_bar_numbered_0_is_a_bar_and_not_a_pickup() -> None:
    # music21 numbers an ABC tune's first bar 0, full or not.
    full = converter.parse("X:1\nT:t\nM:2/4\nL:1/8\nK:G\nGABc|d2B2|c2A2|G4|]\n", format="abc")
    upbeat = converter.parse("X:1\nT:t\nM:2/4\nL:1/8\nK:G\nG|ABcd|d2B2|c2A2|G3|]\n", format="abc")
    assert [score_summary(full)[name] for name in ("pickup", "bars", "first_bar")] == [False, 4, 0]
    assert [score_summary(upbeat)[name] for name in ("pickup", "bars", "first_bar")] == [True, 4, 1]
