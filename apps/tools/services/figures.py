"""One chord and its Roman numeral in a key: the textbook style every harmony result is written in.

Roman numerals are computed here from the spelled pitches rather than by `roman.romanNumeralFromChord`: music21's
figures mix styles (`bVI7` beside `VI`, `V75#3`, `iv742`) and cost ~9 ms a chord, which was half the time of the
harmony tools. Working from letter names keeps every figure the same under any transposition, enharmonic ones
included, as long as the key is spelled as the score is."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

from music21 import chord, key, pitch

from apps.tools.services.rounding import rounded
from apps.tools.services.spelling import pitch_name

_STEPS = "CDEFGAB"
_NUMERALS = ("I", "II", "III", "IV", "V", "VI", "VII")
_TRIAD_INVERSIONS = ("", "6", "64")
_SEVENTH_INVERSIONS = ("7", "65", "43", "42")


def step_of(p: pitch.Pitch) -> int:
    return _STEPS.index(p.step)


def _generic(low: pitch.Pitch, high: pitch.Pitch) -> int:
    """The letter distance from `low` up to `high` within an octave: 0 unison, 2 third, 4 fifth, 6 seventh."""
    return (step_of(high) - step_of(low)) % 7


def _semitones(low: pitch.Pitch, high: pitch.Pitch) -> int:
    return round(high.ps - low.ps) % 12


_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
# The scales a missing third is taken from (`third_of`): in minor the harmonic minor's leading tone, so that a bare
# fifth on the dominant is V, as the dominant of a minor key is.
_THIRDS_FROM = {"major": _SCALES["major"], "minor": (0, 2, 3, 5, 7, 8, 11)}


@dataclass(frozen=True)
class Tonality:
    """A key as tonic and mode: music21's `key.Key` builds its scale network on creation (~9 ms), too slow to
    make one per cadence."""

    tonic: pitch.Pitch
    mode: str

    @classmethod
    def of(cls, k: key.Key) -> Tonality:
        return cls(k.tonic, "minor" if k.mode == "minor" else "major")

    @property
    def name(self) -> str:
        return f"{pitch_name(self.tonic)} {self.mode}"

    @property
    def sharps(self) -> int:
        """Sharps (negative: flats) of the key signature, from the tonic's place on the circle of fifths."""
        fifths = {"F": -1, "C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5}[self.tonic.step]
        alter = int(self.tonic.alter)
        return fifths + 7 * alter - (3 if self.mode == "minor" else 0)


def shifted(p: pitch.Pitch, steps: int, semitones: int) -> pitch.Pitch:
    """`p` moved up `steps` letters and `semitones` semitones, spelled accordingly (no octave)."""
    step = _STEPS[(step_of(p) + steps) % 7]
    natural = pitch.Pitch(step)
    alter = (round(p.ps + semitones - natural.ps) + 6) % 12 - 6
    return pitch.Pitch(step + ("#" * alter if alter > 0 else "-" * -alter))


# --- One chord ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chord:
    """A harmony: the chord tones sounding from `offset` for `quarter_length`, with the slices that only decorate
    it (passing and neighbour notes, suspensions, anticipations) folded in."""

    offset: float
    quarter_length: float
    measure: int | None
    beat: float
    pitches: tuple[pitch.Pitch, ...]  # low to high
    root: pitch.Pitch
    third: int | None  # semitones above the root, None when the chord has no third
    fifth: int | None
    seventh: int | None
    inversion: int  # 0 root position, 1 first, 2 second, 3 third

    @property
    def bass(self) -> pitch.Pitch:
        return self.pitches[0]

    @property
    def is_lone_note(self) -> bool:
        """One pitch class (a melody note alone, or in octaves): no chord, so no Roman numeral."""
        return all(p.name == self.root.name for p in self.pitches)

    @property
    def is_triad(self) -> bool:
        """A consonant (major or minor) triad, which a cadence can close on."""
        return self.third in (3, 4) and self.fifth in (7, None) and self.seventh is None


def tertian_root(pitches: tuple[pitch.Pitch, ...]) -> pitch.Pitch | None:
    """The pitch above which every other one is a third, fifth or seventh (by letter), if there is one."""
    names = {p.name: p for p in pitches}
    for candidate in sorted(names.values(), key=lambda p: p.ps):
        if all(_generic(candidate, p) in (0, 2, 4, 6) for p in names.values()):
            return candidate
    return None


def chord_of(
    pitches: tuple[pitch.Pitch, ...],
    offset: float,
    quarter_length: float,
    measure: int | None,
    beat: float,
    *,
    stacked_on: pitch.Pitch | None,
) -> Chord:
    """The chord of one slice. `stacked_on` is the slice's `tertian_root`, which the caller has asked already (the
    harmonies need it for every slice, and it is a third of their time)."""
    root = stacked_on
    tones = pitches
    if root is None:
        # Not a stack of thirds (an unresolved dissonance): keep the tones that are a chord above music21's root.
        # Copies: a chord takes over the pitches it is given, and these are the shared score's own.
        root = chord.Chord([copy.deepcopy(p) for p in pitches]).root()
        tones = tuple(p for p in pitches if _generic(root, p) in (0, 2, 4, 6)) or pitches
    by_generic = {_generic(root, p): _semitones(root, p) for p in tones}
    return Chord(
        offset=offset,
        quarter_length=quarter_length,
        measure=measure,
        beat=rounded(beat) or 1.0,
        pitches=tones,
        root=root,
        third=by_generic.get(2),
        fifth=by_generic.get(4),
        seventh=by_generic.get(6),
        inversion={0: 0, 2: 1, 4: 2, 6: 3}.get(_generic(root, tones[0]), 0),
    )


def degree_of(root: pitch.Pitch, in_key: Tonality) -> tuple[int, int]:
    """The scale degree (1-7) of `root` in `in_key` and its alteration in semitones from the key's degree (the
    natural minor in minor keys)."""
    degree = (step_of(root) - step_of(in_key.tonic)) % 7 + 1
    alteration = (round(root.ps - in_key.tonic.ps) - _SCALES[in_key.mode][degree - 1] + 6) % 12 - 6
    return degree, alteration


def third_of(c: Chord, in_key: Tonality) -> int:
    """The third of `c` in semitones above its root; for a chord without one (an open fifth, a bare seventh), the
    third it implies: minor under a diminished fifth and major under an augmented one (no other chord has them),
    else the third the key has above the root (A-E in C major is vi, C-G is I; D-A in A minor is iv). music21's
    `romanNumeralFromChord` writes every chord without a major third in lower case (C-G in C major: i5)."""
    if c.third is not None:
        return c.third
    if c.fifth in (6, 8):
        return 3 if c.fifth == 6 else 4
    degree, alteration = degree_of(c.root, in_key)
    return (_THIRDS_FROM[in_key.mode][(degree + 1) % 7] - _SCALES[in_key.mode][degree - 1] - alteration) % 12


def _numeral(c: Chord, in_key: Tonality) -> str:
    """The numeral with its accidental and case: 'V', 'ii', 'bVI', 'vii'."""
    degree, alteration = degree_of(c.root, in_key)
    # In minor the raised seventh (the leading tone) and the natural sixth and seventh are written without an
    # accidental (viio, VI, VII); only the raised sixth is (#vio).
    if in_key.mode == "minor" and degree == 7 and alteration == 1:
        alteration = 0
    prefix = "#" * alteration if alteration > 0 else "b" * -alteration
    numeral = _NUMERALS[degree - 1]
    return prefix + (numeral.lower() if third_of(c, in_key) == 3 else numeral)


def figure_in(c: Chord, in_key: Tonality) -> str:
    third = third_of(c, in_key)
    if c.seventh is None:
        quality = "o" if (third, c.fifth) == (3, 6) else "+" if (third, c.fifth) == (4, 8) else ""
        return _numeral(c, in_key) + quality + _TRIAD_INVERSIONS[min(c.inversion, 2)]
    quality = "o" if (third, c.seventh) == (3, 9) else "ø" if (third, c.fifth, c.seventh) == (3, 6, 10) else ""
    return _numeral(c, in_key) + quality + _SEVENTH_INVERSIONS[c.inversion]


def _diatonic(p: pitch.Pitch, in_key: Tonality) -> bool:
    """Whether `p` belongs to the key; in minor the raised sixth and seventh of the melodic minor do."""
    degree, alteration = degree_of(p, in_key)
    return alteration == 0 or (in_key.mode == "minor" and degree in (6, 7) and alteration == 1)


def _secondary_target(c: Chord, following: Chord | None, in_key: Tonality) -> Chord | None:
    """The chord `c` is the dominant (V, V7) or leading-tone chord (viio, viio7, viiø7) of, when it is chromatic in
    `in_key` and resolves to that chord (or to the I64 before it, for V/V); None otherwise."""
    if following is None:
        return None
    third = third_of(c, in_key)  # a diminished seventh chord may leave out its third (A-C-D#, viio43/ii)
    dominant = third == 4 and c.fifth in (7, None) and c.seventh in (10, None)
    # A diminished fifth or seventh must be there: a bare minor third is no leading-tone chord.
    leading = third == 3 and (c.fifth == 6 or c.seventh == 9) and c.fifth in (6, None) and c.seventh in (9, 10, None)
    if dominant:
        target = shifted(c.root, 3, 5)
    elif leading:
        target = shifted(c.root, 1, 1)
    else:
        return None
    resolves = following.root.name == target.name
    cadential_64 = degree_of(target, in_key) == (5, 0) and following.root.name == in_key.tonic.name
    if not (resolves or (cadential_64 and following.inversion == 2)):
        return None
    degree, _ = degree_of(target, in_key)
    if degree == 1:
        return None  # the key's own V or viio
    chromatic = not all(_diatonic(p, in_key) for p in c.pitches)
    # VII in minor resolving to III is the textbook V/III though it is diatonic.
    subtonic = in_key.mode == "minor" and dominant and degree_of(c.root, in_key) == (7, 0)
    if not (chromatic or subtonic):
        return None
    return following if resolves else replace(following, root=target, third=4, fifth=7, seventh=None, inversion=0)


def roman_figure(c: Chord, in_key: Tonality, following: Chord | None = None) -> str:
    """The textbook figure of `c` in `in_key`: upper case for a major third, lower case for a minor one; `o`
    diminished, `ø` half-diminished, `+` augmented; inversions 6, 64 (triads) and 7, 65, 43, 42 (sevenths);
    `b`/`#` before the numeral only for a root outside the key (in minor VI, VII and viio are the key's own, `bVI`
    appears only in major); secondary dominants as `V7/V`, `viio7/ii` when the chord is chromatic and resolves to
    that degree (VII to III in minor is `V/III`)."""
    target = _secondary_target(c, following, in_key)
    if target is None:
        return figure_in(c, in_key)
    local = Tonality(target.root, "minor" if third_of(target, in_key) == 3 else "major")
    return f"{figure_in(c, local)}/{_numeral(target, in_key)}"


_FUNCTIONS = {1: "tonic", 3: "tonic", 6: "tonic", 2: "predominant", 4: "predominant", 5: "dominant", 7: "dominant"}


def harmonic_function(figure: str, c: Chord, in_key: Tonality) -> str:
    """tonic (I, iii, vi), predominant (ii, IV), dominant (V, viio); a secondary chord is 'dominant of X'."""
    if "/" in figure:
        return f"dominant of {figure.split('/', 1)[1]}"
    return _FUNCTIONS[degree_of(c.root, in_key)[0]]
