"""Chords, Roman numerals and cadences of a whole score. Pure functions from a music21 stream to a dict.

The stream comes from the shared parsed-score cache, so nothing here may change it: music21 calls that would
(`chordify`, `stripTies`, `transpose`) make new streams, and nothing is inserted into the original.

Roman numerals are written in one textbook style (see `roman_figure`), computed here from the spelled pitches
rather than by `roman.romanNumeralFromChord`: music21's figures mix styles (`bVI7` beside `VI`, `V75#3`, `iv742`)
and cost ~9 ms a chord, which was half the time of these tools. Working from letter names keeps every figure the
same under any transposition, enharmonic ones included, as long as the key is spelled as the score is."""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass, replace
from typing import Any

from music21 import chord, key, pitch, stream

from apps.core.errors import AnalysisError
from apps.tools.services.keys import _round, score_key
from apps.tools.services.spelling import pitch_name
from apps.tools.services.summary import part_label

_STEPS = "CDEFGAB"
_NUMERALS = ("I", "II", "III", "IV", "V", "VI", "VII")
_TRIAD_INVERSIONS = ("", "6", "64")
_SEVENTH_INVERSIONS = ("7", "65", "43", "42")


def _step(p: pitch.Pitch) -> int:
    return _STEPS.index(p.step)


def _generic(low: pitch.Pitch, high: pitch.Pitch) -> int:
    """The letter distance from `low` up to `high` within an octave: 0 unison, 2 third, 4 fifth, 6 seventh."""
    return (_step(high) - _step(low)) % 7


def _semitones(low: pitch.Pitch, high: pitch.Pitch) -> int:
    return round(high.ps - low.ps) % 12


_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}


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


def _shift(p: pitch.Pitch, steps: int, semitones: int) -> pitch.Pitch:
    """`p` moved up `steps` letters and `semitones` semitones, spelled accordingly (no octave)."""
    step = _STEPS[(_step(p) + steps) % 7]
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
    def is_triad(self) -> bool:
        """A consonant (major or minor) triad, which a cadence can close on."""
        return self.third in (3, 4) and self.fifth in (7, None) and self.seventh is None


def _tertian_root(pitches: tuple[pitch.Pitch, ...]) -> pitch.Pitch | None:
    """The pitch above which every other one is a third, fifth or seventh (by letter), if there is one."""
    names = {p.name: p for p in pitches}
    for candidate in sorted(names.values(), key=lambda p: p.ps):
        if all(_generic(candidate, p) in (0, 2, 4, 6) for p in names.values()):
            return candidate
    return None


def _chord(
    pitches: tuple[pitch.Pitch, ...], offset: float, quarter_length: float, measure: int | None, beat: float
) -> Chord:
    root = _tertian_root(pitches)
    tones = pitches
    if root is None:
        # Not a stack of thirds (an unresolved dissonance): keep the tones that are a chord above music21's root.
        root = chord.Chord(pitches).root()
        tones = tuple(p for p in pitches if _generic(root, p) in (0, 2, 4, 6)) or pitches
    by_generic = {_generic(root, p): _semitones(root, p) for p in tones}
    return Chord(
        offset=offset,
        quarter_length=quarter_length,
        measure=measure,
        beat=_round(beat) or 1.0,
        pitches=tones,
        root=root,
        third=by_generic.get(2),
        fifth=by_generic.get(4),
        seventh=by_generic.get(6),
        inversion={0: 0, 2: 1, 4: 2, 6: 3}.get(_generic(root, tones[0]), 0),
    )


def _degree(root: pitch.Pitch, in_key: Tonality) -> tuple[int, int]:
    """The scale degree (1-7) of `root` in `in_key` and its alteration in semitones from the key's degree (the
    natural minor in minor keys)."""
    degree = (_step(root) - _step(in_key.tonic)) % 7 + 1
    alteration = (round(root.ps - in_key.tonic.ps) - _SCALES[in_key.mode][degree - 1] + 6) % 12 - 6
    return degree, alteration


def _numeral(c: Chord, in_key: Tonality) -> str:
    """The numeral with its accidental and case: 'V', 'ii', 'bVI', 'vii'."""
    degree, alteration = _degree(c.root, in_key)
    # In minor the raised seventh (the leading tone) and the natural sixth and seventh are written without an
    # accidental (viio, VI, VII); only the raised sixth is (#vio).
    if in_key.mode == "minor" and degree == 7 and alteration == 1:
        alteration = 0
    prefix = "#" * alteration if alteration > 0 else "b" * -alteration
    numeral = _NUMERALS[degree - 1]
    return prefix + (numeral.lower() if c.third == 3 else numeral)


def _figure_in(c: Chord, in_key: Tonality) -> str:
    if c.seventh is None:
        quality = "o" if (c.third, c.fifth) == (3, 6) else "+" if (c.third, c.fifth) == (4, 8) else ""
        return _numeral(c, in_key) + quality + _TRIAD_INVERSIONS[min(c.inversion, 2)]
    quality = "o" if (c.third, c.seventh) == (3, 9) else "ø" if (c.third, c.fifth, c.seventh) == (3, 6, 10) else ""
    return _numeral(c, in_key) + quality + _SEVENTH_INVERSIONS[c.inversion]


def _diatonic(p: pitch.Pitch, in_key: Tonality) -> bool:
    """Whether `p` belongs to the key; in minor the raised sixth and seventh of the melodic minor do."""
    degree, alteration = _degree(p, in_key)
    return alteration == 0 or (in_key.mode == "minor" and degree in (6, 7) and alteration == 1)


def _secondary_target(c: Chord, following: Chord | None, in_key: Tonality) -> Chord | None:
    """The chord `c` is the dominant (V, V7) or leading-tone chord (viio, viio7, viiø7) of, when it is chromatic in
    `in_key` and resolves to that chord (or to the I64 before it, for V/V); None otherwise."""
    if following is None:
        return None
    dominant = c.third == 4 and c.fifth in (7, None) and c.seventh in (10, None)
    # A diminished fifth or seventh must be there: a bare minor third is no leading-tone chord.
    leading = c.third == 3 and (c.fifth == 6 or c.seventh == 9) and c.fifth in (6, None) and c.seventh in (9, 10, None)
    if dominant:
        target = _shift(c.root, 3, 5)
    elif leading:
        target = _shift(c.root, 1, 1)
    else:
        return None
    resolves = following.root.name == target.name
    cadential_64 = _degree(target, in_key) == (5, 0) and following.root.name == in_key.tonic.name
    if not (resolves or (cadential_64 and following.inversion == 2)):
        return None
    degree, _ = _degree(target, in_key)
    if degree == 1:
        return None  # the key's own V or viio
    chromatic = not all(_diatonic(p, in_key) for p in c.pitches)
    # VII in minor resolving to III is the textbook V/III though it is diatonic.
    subtonic = in_key.mode == "minor" and dominant and _degree(c.root, in_key) == (7, 0)
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
        return _figure_in(c, in_key)
    local = Tonality(target.root, "minor" if target.third == 3 else "major")
    return f"{_figure_in(c, local)}/{_numeral(target, in_key)}"


_FUNCTIONS = {1: "tonic", 3: "tonic", 6: "tonic", 2: "predominant", 4: "predominant", 5: "dominant", 7: "dominant"}


def harmonic_function(figure: str, c: Chord, in_key: Tonality) -> str:
    """tonic (I, iii, vi), predominant (ii, IV), dominant (V, viio); a secondary chord is 'dominant of X'."""
    if "/" in figure:
        return f"dominant of {figure.split('/', 1)[1]}"
    return _FUNCTIONS[_degree(c.root, in_key)[0]]


# --- The chords of a score ----------------------------------------------------------------------------------------


def _steps_apart(a: pitch.Pitch, b: pitch.Pitch) -> bool:
    return 0 < abs(a.ps - b.ps) <= 2 and abs(_step(a) + 7 * (a.octave or 0) - _step(b) - 7 * (b.octave or 0)) == 1


def _decorates(now: tuple[pitch.Pitch, ...], before: tuple[pitch.Pitch, ...], after: tuple[pitch.Pitch, ...]) -> bool:
    """Whether each note of `now` that `before` did not have came by step from a note of `before` and leaves by
    step (a passing or neighbour note), or is a single note kept into `after` (an anticipation)."""
    names_before = {p.nameWithOctave for p in before}
    names_after = {p.nameWithOctave for p in after}
    new = [p for p in now if p.nameWithOctave not in names_before]
    if not new:
        return True
    for p in new:
        approached = any(_steps_apart(q, p) for q in before)
        left = p.nameWithOctave not in names_after and any(_steps_apart(p, q) for q in after)
        anticipated = len(new) == 1 and p.nameWithOctave in names_after
        if not (approached and (left or anticipated)):
            return False
    return True


def _resolves_into(now: Chord, after: Chord, dissonant: bool) -> bool:
    """A suspension or appoggiatura: `now` is no stack of thirds (`dissonant`), or a seventh chord or second
    inversion before a consonant triad; it has the bass of `after`, and each of its notes that `after` lacks moves
    to `after` by step (a 4-3 or 9-8 over the same bass, a 6-5 onto a triad)."""
    if not (dissonant or (after.is_triad and not now.is_triad)):
        return False
    names_after = {p.name for p in after.pitches}
    return now.bass.name == after.bass.name and all(
        any(_steps_apart(p, q) for q in after.pitches) for p in now.pitches if p.name not in names_after
    )


Slice = tuple[tuple[pitch.Pitch, ...], float, float, "int | None", float]


def _slices(chordified: stream.Score) -> list[Slice]:
    """Each sounding slice as (pitches low to high, offset, quarter_length, measure, beat).

    Beats come from each measure's time signature: asking every chord for its `beat` searches its contexts, which
    took as long as `chordify` itself (a Beethoven quartet movement: 5 s of 16); the answers are the same."""
    measures = list(chordified.getElementsByClass(stream.Measure))
    if not measures:
        return [
            (
                tuple(sorted(ch.pitches, key=lambda p: p.ps)),
                float(ch.offset),
                float(ch.quarterLength),
                None,
                float(ch.beat),
            )
            for ch in chordified.flatten().getElementsByClass(chord.Chord)
            if ch.pitches
        ]
    slices: list[Slice] = []
    meter = None
    for measure in measures:
        meter = measure.timeSignature or meter
        for ch in measure.recurse().getElementsByClass(chord.Chord):
            if not ch.pitches:
                continue
            position = float(ch.offset) + float(measure.paddingLeft)
            beat = float(meter.getBeatProportion(position)) if meter else position + 1
            slices.append(
                (
                    tuple(sorted(ch.pitches, key=lambda p: p.ps)),
                    float(measure.offset) + float(ch.offset),
                    float(ch.quarterLength),
                    measure.number,
                    beat,
                )
            )
    return slices


def chords(music: stream.Score) -> list[Chord]:
    """The score's harmonies (all parts sounded together), one per change of harmony.

    `chordify` slices at every onset in any part; a slice whose new notes arrive and leave by step (passing and
    neighbour notes, anticipations) belongs to the chord before it, and a slice that is no chord but resolves by
    step over the same bass (a suspension, an appoggiatura) belongs to the chord after it."""
    slices = _slices(music.chordify())
    raw = [_chord(*slice_) for slice_ in slices]
    harmonies: list[Chord] = []
    index = 0
    while index < len(raw):
        current = raw[index]
        following = raw[index + 1] if index + 1 < len(raw) else None
        dissonant = _tertian_root(slices[index][0]) is None
        if following is not None and _resolves_into(current, following, dissonant):
            # The chord is the resolution, from the dissonance's onset.
            current = replace(following, offset=current.offset, measure=current.measure, beat=current.beat)
            index += 1
        harmonies.append(current)
        index += 1
        while index < len(raw):
            now, _, _, _, beat = slices[index]
            after = slices[index + 1][0] if index + 1 < len(slices) else ()
            off_beat = beat % 1 != 0
            if not (off_beat and _decorates(now, harmonies[-1].pitches, after)):
                break
            harmony = harmonies[-1]
            added = raw[index]
            if added.root.name == harmony.root.name and harmony.seventh is None and added.seventh is not None:
                # A passing seventh over the same root (V - V7) makes the chord a seventh chord.
                pitches = tuple(sorted({*harmony.pitches, *added.pitches}, key=lambda p: p.ps))
                harmony = replace(harmony, pitches=pitches, seventh=added.seventh)
            harmonies[-1] = replace(harmony, quarter_length=added.offset + added.quarter_length - harmony.offset)
            index += 1
    return harmonies


def _labelled(harmonies: list[Chord], in_key: Tonality) -> list[str]:
    return [
        roman_figure(c, in_key, harmonies[position + 1] if position + 1 < len(harmonies) else None)
        for position, c in enumerate(harmonies)
    ]


def chord_analysis(music: stream.Score, *, limit: int = 500) -> dict[str, Any]:
    """Every harmony of the score with measure, beat, length, pitches, common name and Roman numeral in the
    score's key."""
    in_key = Tonality.of(score_key(music))
    harmonies = chords(music)
    figures = _labelled(harmonies, in_key)
    return {
        "key": in_key.name,
        "chord_count": len(harmonies),
        "chords": [
            {
                "measure": c.measure,
                "beat": c.beat,
                "quarter_length": _round(c.quarter_length),
                "pitches": [pitch_name(p, octave=True) for p in c.pitches],
                "root": pitch_name(c.root),
                "bass": pitch_name(c.bass),
                "name": f"{pitch_name(c.root)} {chord.Chord(c.pitches).commonName}",
                "roman_numeral": figure,
            }
            for c, figure in zip(harmonies[:limit], figures, strict=False)
        ],
        "truncated": len(harmonies) > limit,
    }


# --- Harmony ------------------------------------------------------------------------------------------------------

_FUNCTION_SYMBOLS = {"tonic": "T", "predominant": "PD", "dominant": "D"}


def harmony_analysis(music: stream.Score, *, analysis_type: str = "roman") -> dict[str, Any]:
    """The harmony as a Roman-numeral progression ('roman'), as tonic/predominant/dominant functions
    ('functional'), or as the cadences at the phrase endings ('cadences')."""
    if analysis_type not in ("roman", "functional", "cadences"):
        raise AnalysisError(f"Unknown analysis_type {analysis_type!r}; use roman, functional or cadences.")
    in_key = Tonality.of(score_key(music))
    harmonies = chords(music)
    base = {"key": in_key.name, "analysis_type": analysis_type}
    if analysis_type == "cadences":
        found = cadences(music, harmonies, in_key)
        melody = melody_part(music)
        parts = _parts(music)
        index = next((i for i, part in enumerate(parts) if part is melody), 0)
        return {
            **base,
            "melody": {"part": index, "part_label": part_label(melody, index)},
            "cadences": found,
            "count": len(found),
        }
    progression = _merge_repeats(harmonies, _labelled(harmonies, in_key))
    if analysis_type == "roman":
        return {
            **base,
            "progression": [{"measure": c.measure, "beat": c.beat, "roman_numeral": f} for c, f in progression],
            "figures": " ".join(f for _, f in progression),
        }
    functions = [harmonic_function(f, c, in_key) for c, f in progression]
    kinds = ["secondary dominant" if f.startswith("dominant of") else f for f in functions]
    return {
        **base,
        "functions": [
            {"measure": c.measure, "beat": c.beat, "roman_numeral": f, "function": function}
            for (c, f), function in zip(progression, functions, strict=True)
        ],
        "counts": {name: kinds.count(name) for name in ("tonic", "predominant", "dominant", "secondary dominant")},
        "summary": " ".join(_FUNCTION_SYMBOLS.get(f, "D/" + f.rsplit(" ", 1)[-1]) for f in functions),
    }


def _merge_repeats(harmonies: list[Chord], figures: list[str]) -> list[tuple[Chord, str]]:
    merged: list[tuple[Chord, str]] = []
    for c, figure in zip(harmonies, figures, strict=True):
        if not merged or merged[-1][1] != figure:
            merged.append((c, figure))
    return merged


# --- Cadences -----------------------------------------------------------------------------------------------------


def _parts(music: stream.Stream) -> list[stream.Stream]:
    return list(music.parts) if isinstance(music, stream.Score) else []


def _has_fermata(element: Any) -> bool:
    return not element.isRest and any(e.name == "fermata" for e in element.expressions)


def melody_part(music: stream.Score) -> stream.Stream:
    """The part that carries the tune: the one named Soprano, else the highest-sounding part with fermatas (a
    chorale's descant trumpet has few), else the highest-sounding part."""
    parts = _parts(music)
    if not parts:
        return music
    for part in parts:
        if "sopran" in (part.partName or "").lower():
            return part

    def height(part: stream.Stream) -> float:
        pitches = [p.ps for n in part.recurse().notes for p in n.pitches]
        return sum(pitches) / len(pitches) if pitches else float("-inf")

    with_fermatas = [p for p in parts if any(_has_fermata(n) for n in p.recurse().notes)]
    return max(with_fermatas or parts, key=height)


@dataclass
class PhraseEnd:
    """The last note of a phrase, its tied continuations included: where it starts and how long it is held."""

    offset: float
    quarter_length: float
    note: Any  # its first music21 note or chord (for the bar, the beat and the pitch)
    fermata: bool


def _held_notes(part: stream.Stream) -> list[PhraseEnd | None]:
    """The part's notes with their ties joined, rests as None. `stripTies` would do it by copying the part, which
    took 3 s of a Beethoven quartet movement's cadences."""
    containers = [(float(m.offset), m) for m in part.getElementsByClass(stream.Measure)] or [(0.0, part.flatten())]
    held: list[PhraseEnd | None] = []
    for base, container in containers:
        for element in container.recurse().notesAndRests:
            if element.isRest:
                held.append(None)
                continue
            fermata = _has_fermata(element)
            if element.tie is not None and element.tie.type in ("stop", "continue") and held and held[-1] is not None:
                held[-1].quarter_length += float(element.quarterLength)
                held[-1].fermata = held[-1].fermata or fermata
                continue
            inner = float(element.activeSite.offset) if isinstance(element.activeSite, stream.Voice) else 0.0
            held.append(PhraseEnd(base + inner + float(element.offset), float(element.quarterLength), element, fermata))
    return held


def phrase_ends(part: stream.Stream) -> list[PhraseEnd]:
    """The notes that end a phrase of `part`: fermatas (chorales mark them so), else notes followed by a rest;
    the last note always ends one. Tied notes count as one, so a fermata note lasts as long as it is held."""
    held = _held_notes(part)
    ends = [n for n in held if n is not None and n.fermata]
    if not ends:
        ends = [n for n, following in itertools.pairwise(held) if n is not None and following is None]
    sounding = [n for n in held if n is not None]
    if sounding and sounding[-1] not in ends:
        ends.append(sounding[-1])
    return sorted(ends, key=lambda n: n.offset)


def phrase_end_offsets(music: stream.Score, part: stream.Stream | None = None) -> list[float]:
    """Where the phrases of `part` (by default the first part) end, as offsets in quarter notes."""
    return [n.offset for n in phrase_ends(part or (_parts(music) or [music])[0])]


def _score_offsets(music: stream.Score, part: stream.Stream) -> Any:
    """A function from an offset in `part` to the offset of the same place in `chordify`'s result, which lays out
    the measures as the first part does. They can differ: in some corpus encodings (bwv171.6) the parts do not
    agree on a measure's length, so only the measure and the place in it identify a moment in every part."""
    own = [float(m.offset) for m in part.getElementsByClass(stream.Measure)]
    parts = _parts(music)
    first = [float(m.offset) for m in parts[0].getElementsByClass(stream.Measure)] if parts else own
    if own == first or len(own) != len(first):
        return lambda offset: offset

    def to_score(offset: float) -> float:
        index = max(bisect.bisect_right(own, offset) - 1, 0)
        return first[index] + offset - own[index]

    return to_score


def cadences(music: stream.Score, harmonies: list[Chord], in_key: Tonality) -> list[dict[str, Any]]:
    """The cadence at each phrase end of the melody (see `melody_part`): the chord the phrase closes on, read
    after the non-chord tones under the final note have resolved, and the last chord on another root before it."""
    found: list[dict[str, Any]] = []
    melody = melody_part(music)
    to_score = _score_offsets(music, melody)
    for end in phrase_ends(melody):
        start = to_score(end.offset)
        stop = start + end.quarter_length
        under = [c for c in harmonies if c.offset < stop and c.offset + c.quarter_length > start]
        if not under:
            continue
        # The chord the phrase arrives on: the first consonant one under the final note (its suspensions are
        # folded into it), not a passing six-four nor what other parts play on while the melody holds (the
        # trumpets' postlude in bwv171.6). At the end of the piece the lower voices may go on to close under a
        # held final note (bwv10.7): there the last one.
        closing = [c for c in under if c.is_triad and c.inversion != 2] or under
        final = closing[-1] if stop >= harmonies[-1].offset + harmonies[-1].quarter_length else closing[0]
        before = [c for c in harmonies if c.offset < final.offset and c.root.name != final.root.name]
        if not before:
            continue
        penultimate = before[-1]
        top = max(end.note.pitches, key=lambda p: p.ps)
        cadence_key, kind, variant = _cadence(penultimate, final, top, in_key)
        found.append(
            {
                "measure": end.note.measureNumber,
                "beat": _round(float(end.note.beat)) or 1.0,
                "kind": kind,
                "variant": variant,
                "key": cadence_key.name,
                "chords": [roman_figure(penultimate, cadence_key, final), _figure_in(final, cadence_key)],
                "chords_in_home_key": [roman_figure(penultimate, in_key, final), _figure_in(final, in_key)],
            }
        )
    return found


def _cadence(penultimate: Chord, final: Chord, top: pitch.Pitch, home: Tonality) -> tuple[Tonality, str, str | None]:
    """The key a cadence is in, its kind and its variant ('phrygian' for iv6-V in minor). The home key is tried
    first; then the key the final chord is the tonic of (a tonicised close), the key it is the dominant of (a
    half close in another key) and the key the penultimate chord is the dominant of (a deceptive one)."""
    candidates = [home]
    if final.is_triad:
        candidates.append(Tonality(final.root, "minor" if final.third == 3 else "major"))
        if final.third == 4:
            below = _shift(final.root, 3, 5)
            majors, minors = Tonality(below, "major"), Tonality(below, "minor")
            distance = [abs(k.sharps - home.sharps) for k in (majors, minors)]
            candidates.append(majors if distance[0] <= distance[1] else minors)
    if penultimate.third == 4:
        candidates.append(Tonality(_shift(penultimate.root, 3, 5), "minor" if final.third == 4 else "major"))
    for in_key in candidates:
        kind, variant = _cadence_kind(penultimate, final, top, in_key)
        if kind != "other":
            return in_key, kind, variant
    return home, "other", None


def _cadence_kind(penultimate: Chord, final: Chord, top: pitch.Pitch, in_key: Tonality) -> tuple[str, str | None]:
    pen_degree, final_degree = _degree(penultimate.root, in_key), _degree(final.root, in_key)
    raised_seventh = (7, 1) if in_key.mode == "minor" else (7, 0)
    dominant = (pen_degree == (5, 0) and penultimate.third == 4) or (
        pen_degree == raised_seventh and penultimate.fifth == 6
    )
    bass_degree = _degree(penultimate.bass, in_key)
    if final_degree == (1, 0) and final.is_triad:
        if dominant:
            perfect = pen_degree[0] == 5 and penultimate.inversion == 0 and final.inversion == 0
            return ("perfect authentic" if perfect and _degree(top, in_key) == (1, 0) else "imperfect authentic"), None
        if pen_degree == (4, 0) or (pen_degree == (2, 0) and bass_degree == (4, 0)):
            return "plagal", None  # IV-I, or ii65 over the same bass
    if final_degree == (5, 0) and final.third == 4 and final.seventh is None:
        phrygian = in_key.mode == "minor" and pen_degree == (4, 0) and penultimate.inversion == 1
        return "half", "phrygian" if phrygian else None
    if dominant and final_degree[0] == 6 and final.is_triad:
        return "deceptive", None
    return "other", None
