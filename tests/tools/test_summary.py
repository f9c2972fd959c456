"""score_info's summary of a parsed score: what a reader of the answer checks against the notation."""

from music21 import chord, key, meter, note, stream

from apps.tools.services.summary import score_summary


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

    assert [(row["name"], row["measures"], row["notes"]) for row in summary["parts"]] == [
        ("Soprano", 2, 3),  # the chord is one note event
        ("lower", 2, 1),  # the rest is none
    ]
    assert (summary["parts_count"], summary["measures"], summary["notes"]) == (2, 2, 4)
    assert (summary["lowest_pitch"], summary["highest_pitch"]) == ("A2", "D5")
    assert summary["key_signatures"] == ["2 sharps", "1 flat"]
    assert summary["time_signatures"] == ["3/4", "6/8"]
    assert summary["duration_quarters"] == 6.0


def test_a_score_without_parts_is_one_part() -> None:
    score = stream.Score()
    score.append([meter.TimeSignature("2/4"), note.Note("G3"), note.Note("B-4"), note.Rest()])

    summary = score_summary(score)

    assert [(row["name"], row["notes"]) for row in summary["parts"]] == [("Part 1", 2)]
    assert (summary["lowest_pitch"], summary["highest_pitch"]) == ("G3", "B-4")
    assert summary["time_signatures"] == ["2/4"]
    assert summary["key_signatures"] == []
