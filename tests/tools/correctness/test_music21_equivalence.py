"""The harmony and key tools read the score the way music21 does, without music21's slow paths: these pin that
what they read is what music21 itself would give (slices as `chordify` makes them, keys as `analyze` ranks them),
and that what is derived from a parsed score is kept with that score only. A score with a part written at other
than sounding pitch is read as music21 analyses music, at sounding pitch: `toSoundingPitch()`, then `chordify` or
`analyze` (for keys, test_transposing.py); any other is read as it is, with no copy."""

from __future__ import annotations

import gc
import weakref

import pytest
from music21 import analysis, corpus, interval, note, pitch

from apps.tools.services import derived, harmony, keys, voiceleading


def _names(slices: list[harmony.Slice]) -> list[tuple[object, ...]]:
    return [(tuple(p.nameWithOctave for p in pitches), *rest) for pitches, *rest in slices]


@pytest.mark.parametrize(
    "work",
    [
        "bach/bwv66.6",
        "bach/bwv171.6",  # the parts disagree on some measures' lengths
        "mozart/k155/movement2",  # triplets: offsets that are fractions
        "chopin/mazurka06-2.krn",  # a piano score: voices and chords inside a part
    ],
)
def test_harmony_slices_are_chordifys(work: str) -> None:
    music = corpus.parse(work)
    expected = _names(harmony._chordified_slices(music.chordify()))
    assert _names(harmony._slices(corpus.parse(work))) == expected
    assert len(expected) > 20


def test_harmony_slices_of_a_transposing_part_are_chordifys_at_sounding_pitch() -> None:
    """music21 analyses the music as it sounds: `toSoundingPitch()`, then `chordify`. `chordify` alone converts
    only a score whose first part is at written pitch; here the third, the Tenor, is written an octave above its
    sound (MusicXML's octave-down <transpose>), and chordify alone would slice it an octave high."""
    work = "trecento/PMFC_06-Jacopo-01-Aquila-Altera"
    music = corpus.parse(work)
    expected = _names(harmony._chordified_slices(music.toSoundingPitch(inPlace=False).chordify()))
    assert _names(harmony._slices(corpus.parse(work))) == expected
    assert expected != _names(harmony._chordified_slices(music.chordify()))
    assert len(expected) > 20


@pytest.mark.parametrize("work", ["bach/bwv66.6", "mozart/k155/movement2", "schoenberg/opus19/movement2"])
def test_every_profile_ranks_keys_as_music21_does(work: str) -> None:
    music = corpus.parse(work)
    for profile in keys.KEY_ALGORITHMS.values():
        found = corpus.parse(work).analyze(profile)
        theirs = [(k.tonic.name, k.mode, k.correlationCoefficient) for k in [found, *found.alternateInterpretations]]
        ours = [(k.tonic, k.mode, k.correlation) for k in keys.profile_keys(music, profile)]
        assert ours == theirs, profile  # the same floats, not only the same rounded figures


@pytest.mark.parametrize(
    "work",
    [
        "bach/bwv66.6",
        "mozart/k155/movement2",  # triplets: lengths that are fractions, summed in music21's order
        "chopin/mazurka06-2.krn",  # voices and chords inside a part
        "joplin/maple_leaf_rag",
    ],
)
def test_the_pitch_class_histogram_is_music21s_to_the_last_bit(work: str) -> None:
    theirs = analysis.discrete.KrumhanslSchmuckler()._getPitchClassDistribution(corpus.parse(work).flatten())
    ours = keys._histogram(corpus.parse(work))
    assert ours == theirs
    assert [type(share) for share in ours] == [type(share) for share in theirs]


def test_a_transposed_copy_is_analysed_afresh() -> None:
    music = corpus.parse("bach/bwv66.6")
    before = keys.key_analysis(music)
    chords_before = harmony.chord_analysis(music)
    transposed = music.transpose(2)  # a new stream: what was derived from the original says nothing of it
    assert keys.key_analysis(transposed)["key"] == "G# minor"
    assert harmony.chord_analysis(transposed)["chords"][0]["root"] != chords_before["chords"][0]["root"]
    assert keys.key_analysis(music) == before
    assert before["key"] == "F# minor"


def test_what_is_derived_leaves_with_the_score() -> None:
    gc.collect()
    held = len(derived._derived)
    music = corpus.parse("bach/bwv66.6")
    keys.key_analysis(music)
    assert len(derived._derived) == held + 1
    del music
    gc.collect()  # a parsed score is one large reference cycle: only a full collection frees it
    assert len(derived._derived) == held


def test_the_music_as_it_sounds_leaves_with_the_score() -> None:
    """The copy at sounding pitch is kept beside the score; the copy would remember its original (music21's
    derivation, a strong reference) and keep it alive for ever, were that link not cut."""
    gc.collect()
    held = len(derived._derived)
    music = corpus.parse("trecento/PMFC_06-Jacopo-01-Aquila-Altera")
    keys.key_analysis(music)
    assert derived.sounding(music) is not music
    score = weakref.ref(music)
    del music
    gc.collect()  # frees the score, and with it the entry that held its copy
    gc.collect()  # frees the copy (one more reference cycle) and its own entry
    assert score() is None
    assert len(derived._derived) == held


def test_a_spelled_perfect_fifth_is_music21s_p5() -> None:
    """The voice-leading tool tells a parallel fifth's spelling from the letters and the semitones; music21's
    interval names it. Every pair of pitches a fifth apart in semitones (either above, compound or not, double
    accidentals and quarter tones included) is a perfect fifth to one exactly when it is to the other."""
    spellings = [
        f"{step}{accidental}{octave}"
        for step in "CDEFGAB"
        for accidental in ("", "#", "-", "##", "--", "~", "`")
        for octave in (2, 3, 4, 5)
    ]
    pitches = [pitch.Pitch(name) for name in spellings]
    candidates = [(a, b) for a in pitches for b in pitches if (a.ps - b.ps) % 12 in (5, 7)]
    fifths = 0
    for a, b in candidates:
        expected = interval.Interval(noteStart=b, noteEnd=a).semiSimpleName == "P5"
        assert voiceleading._spelled_fifth(_event(a), _event(b)) == expected, (a, b)
        fifths += expected
    assert len(candidates) > 3000 and fifths > 300, (len(candidates), fifths)


def _event(p: pitch.Pitch) -> voiceleading.Event:
    return voiceleading.Event(0.0, 1.0, p, note.Note(p), 1, None, 0.0, {}, p.ps)
