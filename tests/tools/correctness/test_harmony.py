"""Chords, Roman numerals and cadences of real chorales, as a music theorist would check them.

Each expectation is derived beside the case: from the score itself read with music21 (the bass and soprano notes of
a cadence, the slices `chordify` makes, music21's own secondary-dominant reading) and by hand from the theory
(which chord a 4-3 suspension resolves to, why a close is plagal or Phrygian)."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import pytest
from music21 import chord, corpus, key, roman, stream

from apps.tools.services.cadences import melody_part
from apps.tools.services.harmony import chord_analysis, harmony_analysis


@cache
def _work(source: str) -> stream.Score:
    """Each work parsed once per module; nothing below changes it (transpositions are new scores)."""
    return corpus.parse(source)


@cache
def _cadences(source: str) -> list[dict[str, Any]]:
    return harmony_analysis(_work(source), analysis_type="cadences")["cadences"]


@cache
def _chords(source: str) -> dict[str, Any]:
    return chord_analysis(_work(source), limit=5000)


def _notes(part: stream.Stream, measure: int) -> list[str]:
    return [n.nameWithOctave for n in part.measure(measure).recurse().notes]


def _last_bass_notes(music: stream.Score, count: int) -> list[str]:
    return [n.name for n in music.parts[-1].flatten().notes][-count:]


# --- Final cadences -------------------------------------------------------------------------------------------------

# (work, kind, key, chords, the bass's last two notes, the melody's last note): the bass and melody are checked
# against the score with music21, the kind follows from them by the textbook definitions.
FINAL_CADENCES = [
    # Plagal: the bass B-F# (iv-I, a Picardy third), the soprano's E#4 between two F#4 is a neighbour note, not
    # the leading tone of a dominant.
    ("bach/bwv66.6", "plagal", "F# minor", ["iv", "I"], ["B", "F#"], "F#"),
    # Plagal: ii65 (G-Bb-D-F over Bb) to I, the bass Bb-F the plagal 4-1.
    ("bach/bwv368", "plagal", "F major", ["ii65", "I"], ["B-", "F"], "F"),
    # Perfect authentic: bass A-D, the soprano C#5-D5 (the soprano, not the first part, a trumpet).
    ("bach/bwv171.6", "perfect authentic", "D major", ["V7", "I"], ["A", "D"], "D"),
    # Perfect authentic in A major (three sharps; the bass E-A, the soprano G#-A).
    ("bach/bwv3.6", "perfect authentic", "A major", ["V7", "I"], ["E", "A"], "A"),
    # Perfect authentic with a Picardy third: bass A-D, soprano E-D, the last chord D major.
    ("bach/bwv4.8", "perfect authentic", "D minor", ["V7", "I"], ["A", "D"], "D"),
    ("bach/bwv5.7", "perfect authentic", "G minor", ["V7", "I"], ["D", "G"], "G"),
    ("bach/bwv11.6", "perfect authentic", "D major", ["V7", "I"], ["A", "D"], "D"),
    ("bach/bwv13.6", "perfect authentic", "Bb major", ["V7", "I"], ["F", "B-"], "B-"),
    ("bach/bwv14.5", "perfect authentic", "G minor", ["V7", "I"], ["D", "G"], "G"),
    ("bach/bwv16.6", "perfect authentic", "A minor", ["V7", "I"], ["E", "A"], "A"),
    ("bach/bwv17.7", "perfect authentic", "A major", ["V7", "I"], ["E", "A"], "A"),
    ("bach/bwv32.6", "perfect authentic", "G major", ["V7", "I"], ["D", "G"], "G"),
    ("bach/bwv40.6", "perfect authentic", "D minor", ["V", "I"], ["A", "D"], "D"),
    ("bach/bwv57.8", "perfect authentic", "Bb major", ["V7", "I"], ["F", "B-"], "B-"),
    ("bach/bwv83.5", "perfect authentic", "D minor", ["V7", "I"], ["A", "D"], "D"),
    # Plagal: the soprano holds G4 for four bars while the lower voices close iv64-I over the tonic pedal.
    ("bach/bwv10.7", "plagal", "G minor", ["iv64", "I"], ["G", "G"], "G"),
]


def test_the_final_cadence_of_each_chorale() -> None:
    # One test over the table (each test costs a database flush here); the message names every work that fails.
    wrong = {}
    for work, kind, in_key, chords, bass, top in FINAL_CADENCES:
        music = _work(work)
        assert (_last_bass_notes(music, 2), melody_part(music).flatten().notes[-1].name) == (bass, top), work
        final = _cadences(work)[-1]
        if (final["kind"], final["key"], final["chords"]) != (kind, in_key, chords):
            wrong[work] = final
    assert not wrong


def test_bwv66_6_bar_9_is_plagal_because_the_e_sharp_is_a_neighbour_note() -> None:
    music = _work("bach/bwv66.6")
    soprano = music.parts[0]
    assert _notes(soprano, 9)[-3:] == ["F#4", "E#4", "F#4"]  # the neighbour note, on beat 2.5
    slices = [c for c in music.chordify().recurse().getElementsByClass(chord.Chord) if c.measureNumber == 9]
    assert any("E#4" in [p.nameWithOctave for p in c.pitches] for c in slices)  # chordify makes a slice of it

    bar_9 = next(c for c in _cadences("bach/bwv66.6") if c["measure"] == 9)
    assert (bar_9["kind"], bar_9["chords"]) == ("plagal", ["iv", "I"])
    assert [c["beat"] for c in _chords("bach/bwv66.6")["chords"] if c["measure"] == 9] == [1.0, 2.0, 3.0]


def test_a_suspension_at_the_fermata_is_read_after_it_resolves() -> None:
    # bwv244.62 bar 8: the soprano's fermata E4 sounds over A2 with the alto's D4 (a 4-3 suspension: A-D-E),
    # which resolves to C#4 on beat 2: the phrase closes on A major, not on the suspension.
    music = _work("bach/bwv244.62")
    assert _notes(music.parts[1], 8)[:2] == ["D4", "C#4"]
    onset = next(c for c in music.chordify().recurse().getElementsByClass(chord.Chord) if c.measureNumber == 8)
    assert sorted(p.name for p in onset.pitches) == ["A", "A", "D", "E"]

    bar_8 = next(c for c in _cadences("bach/bwv244.62") if c["measure"] == 8)
    assert bar_8["chords"][1] == "I" and bar_8["kind"] != "other"
    chords = _chords("bach/bwv244.62")["chords"]
    closing = next(c for c in chords if (c["measure"], c["beat"]) == (8, 1.0))
    assert closing["pitches"] == ["A2", "A3", "C#4", "E4"]


def _line(part: stream.Stream, measure: int) -> list[tuple[float, str]]:
    return [(float(n.offset), n.nameWithOctave) for n in part.measure(measure).recurse().notes]


def test_an_ornamented_4_3_resolves_and_the_cadences_of_bwv26_6_are_authentic() -> None:
    # Bars 6, 8 and 10 close alike: V7 on beat 2, then over the new bass a 4 (the alto's 7th held) that goes down
    # to the 2 on the half beat and up to the 3 on beat 4 (bar 10: D4 B3 C#4 over A3-A2). The 4 is no IV64 chord:
    # the chord from beat 3 is the one it resolves to, and each close is V7-I in D major, C major and A minor.
    music = _work("bach/bwv26.6")
    alto, bass = music.parts[1], music.parts[3]
    assert _line(alto, 10)[-4:] == [(1.5, "D4"), (2.0, "D4"), (2.5, "B3"), (3.0, "C#4")]
    assert _line(bass, 10)[-2:] == [(2.0, "A3"), (3.0, "A2")]
    bar_10 = [c for c in _chords("bach/bwv26.6")["chords"] if c["measure"] == 10]
    assert [(c["beat"], c["roman_numeral"], c["quarter_length"]) for c in bar_10][-2:] == [
        (2.0, "V7", 1.0),
        (3.0, "I", 2.0),
    ]
    found = {c["measure"]: (c["kind"], c["key"], c["chords"]) for c in _cadences("bach/bwv26.6")}
    assert found[6] == ("perfect authentic", "D major", ["V7", "I"])
    assert found[8] == ("perfect authentic", "C major", ["V7", "I"])
    assert found[10] == ("perfect authentic", "A minor", ["V7", "I"])  # a Picardy third
    # bwv11.6 bar 19: the same figure over A2 (D4 B3 C#4): V from the beat, not a chord without its third.
    beat_1 = next(c for c in _chords("bach/bwv11.6")["chords"] if (c["measure"], c["beat"]) == (19, 1.0))
    assert (beat_1["roman_numeral"], beat_1["pitches"]) == ("V", ["A2", "A3", "C#4", "E4"])


def test_a_neighbour_note_into_the_beat_is_no_resolution() -> None:
    # bwv103.6 bar 4: V (F#-A#-C#) with the alto's neighbour B4 from beat 1.5, held over beat 2 and going back to
    # A#4 on 2.5 as the tenor passes F#4-E4 (V7). The B4 resolves only on 2.5: it is not a I64 on beat 1.5 (which
    # dropped the soprano's C#5), and the close on beat 3 is V7-i.
    music = _work("bach/bwv103.6")
    assert _line(music.parts[1], 4) == [(0.0, "A#4"), (0.5, "B4"), (1.5, "A#4"), (2.0, "F#4")]
    bar_4 = [c for c in _chords("bach/bwv103.6")["chords"] if c["measure"] == 4]
    assert [(c["beat"], c["roman_numeral"]) for c in bar_4][:3] == [(1.0, "V"), (2.0, "V7"), (3.0, "i")]
    assert all("C#5" in c["pitches"] for c in bar_4[:2])
    close = next(c for c in _cadences("bach/bwv103.6") if c["measure"] == 4)
    assert (close["kind"], close["chords"]) == ("perfect authentic", ["V7", "i"])


def test_a_dominant_seventh_without_its_third_closes_authentically() -> None:
    # bwv113.8 bar 13 beat 4: F#2 E4 F#4 C#5, V7 of B minor without its A#, then B major (a Picardy third) under
    # the fermata: V7-I, perfect authentic (it was no dominant without a major third, and read as a half close).
    music = _work("bach/bwv113.8")
    assert [n.nameWithOctave for n in music.parts[3].measure(13).notes][-1] == "F#2"
    beat_4 = next(c for c in _chords("bach/bwv113.8")["chords"] if (c["measure"], c["beat"]) == (13, 4.0))
    assert (beat_4["pitches"], beat_4["roman_numeral"]) == (["F#2", "E4", "F#4", "C#5"], "V7")
    close = next(c for c in _cadences("bach/bwv113.8") if c["measure"] == 14)
    assert (close["kind"], close["key"], close["chords"]) == ("perfect authentic", "B minor", ["V7", "I"])


def test_the_mediant_over_the_dominant_bass_closes_as_the_dominant() -> None:
    # bwv103.6 bar 6 (B minor, the phrase turning to A major): over E3 the tenor goes C#4-D4 (6-7, with G#4 in the
    # soprano), then the bass falls to A2 and the soprano rises G#4-A4. The chord on beat 2 reads iii6 in A major,
    # the dominant with its 6 (E7 on the half beat): a perfect authentic close in A, not a half close in D major
    # (whose key has no G#).
    music = _work("bach/bwv103.6")
    assert _line(music.parts[2], 6)[1:4] == [(1.0, "C#4"), (1.5, "D4"), (2.0, "C#4")]
    assert _line(music.parts[3], 6)[2:4] == [(1.0, "E3"), (2.0, "A2")]
    assert _line(music.parts[0], 6)[1:3] == [(1.0, "G#4"), (2.0, "A4")]
    close = next(c for c in _cadences("bach/bwv103.6") if c["measure"] == 6)
    assert (close["kind"], close["key"], close["chords"]) == ("perfect authentic", "A major", ["iii6", "I"])


def test_phrase_ends_come_from_the_soprano_not_the_trumpet() -> None:
    # bwv171.6 opens with three trumpets and timpani; Trumpet 1 has 2 fermatas, the soprano 16, one per phrase
    # (in bars 31 and 39 on the tied continuation of a held note: one phrase end each, where the note starts).
    music = _work("bach/bwv171.6")
    assert music.parts[0].partName == "Trumpet 1"
    soprano = next(p for p in music.parts if p.partName.startswith("Soprano"))
    held: list[list[Any]] = []
    for n in soprano.recurse().notes:
        if n.tie is not None and n.tie.type in ("stop", "continue"):
            held[-1].append(n)
        else:
            held.append([n])
    fermatas = [notes[0] for notes in held if any(e.name == "fermata" for n in notes for e in n.expressions)]
    assert len(fermatas) == 16
    assert melody_part(music) is soprano
    found = _cadences("bach/bwv171.6")
    assert [c["measure"] for c in found] == [n.measureNumber for n in fermatas]
    assert harmony_analysis(music, analysis_type="cadences")["melody"] == {"part": 4, "part_label": soprano.partName}


def test_bwv368_closes_plagally_and_its_half_cadence_has_a_secondary_dominant() -> None:
    found = {c["measure"]: c for c in _cadences("bach/bwv368")}
    # Bar 8: G major (B natural in F major) to C major: V/V-V, a half cadence.
    assert (found[8]["kind"], found[8]["chords"]) == ("half", ["V/V", "V"])
    assert (found[31]["kind"], found[31]["chords"]) == ("plagal", ["ii65", "I"])


def test_the_phrygian_half_cadence_of_bwv66_6() -> None:
    # Bar 7: iv6 (B minor over D) to V (C# major): the bass falls a semitone D-C#, the Phrygian close of minor.
    music = _work("bach/bwv66.6")
    assert [n.name for n in music.parts[3].measure(7).notes][-2:] == ["D", "C#"]
    bar_7 = next(c for c in _cadences("bach/bwv66.6") if c["measure"] == 7)
    assert (bar_7["kind"], bar_7["variant"], bar_7["key"], bar_7["chords"]) == (
        "half",
        "phrygian",
        "F# minor",
        ["iv6", "V"],
    )


# --- Roman numerals -------------------------------------------------------------------------------------------------

TEXTBOOK_FIGURE = re.compile(
    r"^[b#]?(?:I|II|III|IV|V|VI|VII|i|ii|iii|iv|v|vi|vii)[oø+]?(?:6|64|7|65|43|42)?(?:/[b#]?[IViv]+)?$"
)
WORKS = [work for work, *_ in FINAL_CADENCES]


def test_every_figure_is_in_the_one_textbook_style() -> None:
    for work in WORKS:
        result = _chords(work)
        figures = [c["roman_numeral"] for c in result["chords"]]
        assert all(TEXTBOOK_FIGURE.match(f) for f in figures), (
            work,
            [f for f in figures if not TEXTBOOK_FIGURE.match(f)],
        )
        if result["key"].endswith("minor"):
            # In minor the natural sixth and seventh degrees are the key's own: VI and VII, never bVI, bVII.
            assert not any(f.startswith(("bVI", "bvi", "bVII", "bvii")) for f in figures), work


def test_secondary_dominants_are_dominants_of_their_degree_and_dominant_in_function() -> None:
    # Checked with music21: the chord is a major triad or dominant seventh a fifth above the degree it names
    # (V/x), or a diminished chord a semitone below it (viio/x), and the degree's root is music21's own.
    for work in ("bach/bwv66.6", "bach/bwv368", "bach/bwv11.6"):
        result = _chords(work)
        tonic, mode = result["key"].replace("b ", "- ").split()
        in_key = key.Key(tonic, mode)
        secondary = [c for c in result["chords"] if "/" in c["roman_numeral"]]
        assert secondary, work
        for c in secondary:
            own, of = c["roman_numeral"].split("/")
            target = roman.RomanNumeral(of, in_key).root().pitchClass
            played = chord.Chord(c["pitches"])
            if own.startswith("V"):
                assert played.isDominantSeventh() or played.quality == "major", (work, c)
                assert (played.root().pitchClass - target) % 12 == 7, (work, c)
            else:
                assert own.startswith("vii") and played.quality in ("diminished", "other"), (work, c)
                assert (target - played.root().pitchClass) % 12 == 1, (work, c)
        for f in harmony_analysis(_work(work), analysis_type="functional")["functions"]:
            if "/" in f["roman_numeral"]:
                assert f["function"] == "dominant of " + f["roman_numeral"].split("/")[1], (work, f)


def test_bwv66_6_figures_by_hand() -> None:
    chords = {(c["measure"], c["beat"]): c["roman_numeral"] for c in _chords("bach/bwv66.6")["chords"]}
    assert chords[(6, 1.0)] == "VI"  # D major in F# minor: the natural sixth degree (music21 writes bVI)
    assert chords[(8, 2.0)] == "V65/iv"  # F#-A#-C#-E over A#, resolving to B minor on beat 3:
    assert chords[(8, 3.0)] == "iv"  # its C#4 and E4 held over B2 go down to B3 and D4 as the bass moves on
    assert chords[(2, 2.0)] == "V7/III"  # E-G#-B with the passing D: the dominant seventh of A major
    assert chords[(3, 2.0)] == "V7"  # C#-E#-G# with the passing B (music21: V75#3)
    assert (2, 2.5) not in chords and (3, 2.5) not in chords  # the passing sevenths are not chords of their own


_INVERSION_OF_FIGURE = {"": 0, "7": 0, "6": 1, "65": 1, "64": 2, "43": 2, "42": 3}


def test_a_passing_seventh_in_the_bass_passes_and_every_figure_agrees_with_its_bass() -> None:
    # bwv104.6 bar 1: the bass A3 on the beat, G#3 on beat 1.5 passing down to F#3 (IV6 on beat 2) under A-E-A-C#:
    # I with a passing note, not an "I7" reported over G# (whose figure, I7, said the bass was A).
    music = _work("bach/bwv104.6")
    assert [(float(n.offset), n.nameWithOctave) for n in music.parts[3].measure(1).notes][:3] == [
        (0.0, "A3"),
        (0.5, "G#3"),
        (1.0, "F#3"),
    ]
    first = next(c for c in _chords("bach/bwv104.6")["chords"] if (c["measure"], c["beat"]) == (1, 1.0))
    assert (first["roman_numeral"], first["bass"], first["pitches"]) == ("I", "A", ["A3", "E4", "A4", "C#5"])
    # bwv153.1 bar 9 beat 2: A minor over A3 with the bass passing through G3 (it was "i7" over G).
    beat_2 = next(c for c in _chords("bach/bwv153.1")["chords"] if (c["measure"], c["beat"]) == (9, 2.0))
    assert (beat_2["roman_numeral"], beat_2["bass"]) == ("i", "A")
    # The figure's inversion is the place of the reported bass above the reported root, in every chord.
    for work in [*WORKS, "bach/bwv104.6", "bach/bwv153.1"]:
        for c in _chords(work)["chords"]:
            figure = re.fullmatch(r"[b#]?[IViv]+[oø+]?(\d*)(?:/.*)?", c["roman_numeral"])
            assert figure is not None, (work, c)
            above_root = (ord(c["bass"][0]) - ord(c["root"][0])) % 7  # letters: 0 root, 2 third, 4 fifth, 6 seventh
            assert {0: 0, 2: 1, 4: 2, 6: 3}[above_root] == _INVERSION_OF_FIGURE[figure.group(1)], (work, c)


def _at(work: str, measure: int, beat: float) -> dict[str, Any]:
    return next(c for c in _chords(work)["chords"] if (c["measure"], c["beat"]) == (measure, beat))


@pytest.mark.parametrize(
    ("work", "measure", "beat", "pitches", "figure"),
    [
        # G minor: C-Bb-G with no Eb or E: the key's Eb makes it iv7 (music21: iv7), not IV7.
        ("bach/bwv10.7", 4, 2.0, ["C3", "Bb3", "G4", "C5"], "iv7"),
        # A minor: E-Bb is a diminished fifth, so the third can only be minor: half-diminished (music21: vø7b5).
        ("bach/bwv26.6", 6, 1.5, ["E2", "D4", "Bb4", "E5"], "vø7"),
        # Eb major: Eb-Bb between I6 and V6: the key's G, I (music21: i5).
        ("bach/bwv140.7", 2, 2.0, ["Eb3", "Bb3", "Bb4"], "I"),
        # G major: C-G between IV6 and IV: the key's E, IV (music21: iv5).
        ("bach/bwv117.4", 7, 2.0, ["C3", "G4"], "IV"),
    ],
)
def test_a_chord_without_a_third_takes_the_keys_third_or_the_one_its_fifth_allows(
    work: str, measure: int, beat: float, pitches: list[str], figure: str
) -> None:
    c = _at(work, measure, beat)
    assert (c["pitches"], c["roman_numeral"]) == (pitches, figure)
    assert chord.Chord(pitches).third is None


def test_a_lone_note_is_no_chord_and_has_no_numeral() -> None:
    # bwv130.6 bar 16: the third horn holds E5 a beat after the others' final C major chord.
    held = _at("bach/bwv130.6", 16, 3.0)
    assert (held["pitches"], held["name"], held["roman_numeral"]) == (["E5"], "E note", None)
    # A tune alone (the first song of essenFolksong/han1): no chords, so no numerals, progression or cadences.
    tune = corpus.parse("essenFolksong/han1", number=1)
    assert len(tune.parts) == 1 and all(len(n.pitches) == 1 for n in tune.recurse().notes)
    assert {c["roman_numeral"] for c in chord_analysis(tune)["chords"]} == {None}
    assert harmony_analysis(tune)["figures"] == ""
    assert harmony_analysis(tune, analysis_type="cadences")["count"] == 0


# --- Transposition --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("work", "by", "transposed_key"),
    [
        ("bach/bwv66.6", "-A2", "Eb minor"),  # three sharps to six flats: every pitch respelled enharmonically
        ("bach/bwv368", "A1", "F# major"),  # one flat to six sharps, the same letters
        ("bach/bwv11.6", "-m3", "B major"),
    ],
)
def test_a_transposed_chorale_has_the_same_numerals_and_cadences(work: str, by: str, transposed_key: str) -> None:
    original, transposed = _work(work), _work(work).transpose(by)
    before, after = harmony_analysis(original), harmony_analysis(transposed)
    assert after["key"] == transposed_key
    assert after["figures"] == before["figures"]
    cadences_after = harmony_analysis(transposed, analysis_type="cadences")["cadences"]
    same = ("measure", "beat", "kind", "variant", "chords", "chords_in_home_key")
    assert [{k: c[k] for k in same} for c in cadences_after] == [{k: c[k] for k in same} for c in _cadences(work)]
