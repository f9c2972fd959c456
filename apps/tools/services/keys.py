"""The key of a whole score. Pure functions from a music21 stream to a dict.

The stream comes from the shared parsed-score cache, so nothing here may change it. The music is read as it sounds
(apps.tools.services.derived.sounding): a Bb clarinet's written D is the C it sounds."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import lru_cache
from statistics import fmean
from typing import Any

from music21 import key, note, pitch, stream
from music21.analysis import discrete

from apps.core.errors import AnalysisError
from apps.tools.services.derived import derived, sounding
from apps.tools.services.rounding import rounded
from apps.tools.services.spelling import key_signature_keys, pitch_name
from apps.tools.services.summary import key_signature_name, key_signatures

# music21's names for the key-finding profiles. "aarden" is the profile `analyze('key')` uses by default.
KEY_ALGORITHMS = {
    "aarden": "AardenEssen",
    "krumhansl": "KrumhanslSchmuckler",
    "bellman": "BellmanBudge",
    "temperley": "TemperleyKostkaPayne",
    "simple": "SimpleWeights",
}
DEFAULT_KEY_ALGORITHM = "aarden"
# How much less well than the best a key may correlate and still be chosen for fitting a caller's condition: a
# tune alone says little (an A minor tune with its G#s correlates 0.53 with E major, 0.48 with A minor).
NEAR_BEST = 0.1

# Below this mean correlation (of each profile with its own best key) a score has no clear key. Measured with the
# five profiles on the bundled corpus (2026-12): tonal works from 0.80 (chopin/mazurka06-2, the lowest; its aarden
# correlation alone 0.73) to 0.96 (bach/bwv248.42-4), 21 works of chorales, quartets, songs, rag, Renaissance mass;
# atonal ones at 0.58 (schoenberg/opus19/movement2), 0.46 (opus19/movement6), 0.26 (webern op. 16 no. 2) and 0.0
# for twelve-tone rows in equal notes. Agreement cannot tell them apart (opus19/2: 3 of 5 agree; a flat twelve-tone
# histogram: 5 of 5, all on the profiles' first key), nor can the margin (tonal 0.01-0.31, atonal 0.02-0.07).
NO_CLEAR_KEY_BELOW = 0.7
# A margin this wide (best correlation minus the runner-up's) counts as decisive in `confidence`: single-key
# tonal works measured 0.13 (bwv103.6) to 0.31 (Verdi's La donna è mobile); close calls between relative or
# neighbouring keys 0.01-0.05 (Handel's Lascia ch'io pianga, bwv8.6).
DECISIVE_MARGIN = 0.2
# Fewer than half the profiles naming the key, or a runner-up this close, makes the key worth a warning.
CLOSE_MARGIN = 0.02


def _require_notes(music: stream.Stream) -> None:
    """Refuse music with no pitched note (nothing at all, or only unpitched percussion)."""
    if not any(n.pitches for n in music.recurse().notes):
        raise AnalysisError("The score has no pitched notes to analyse (unpitched percussion has no pitch).")


@lru_cache(maxsize=128)
def _sharps(tonic: str, mode: str) -> int:
    return key.Key(tonic, mode).sharps


@lru_cache(maxsize=12)
def _spellings(pitch_class: int) -> tuple[str, ...]:
    """The tonic names of `pitch_class` with at most one sharp or flat, in music21's spelling (`E-`, `D#`)."""
    names = []
    for step in "CDEFGAB":
        for alter, mark in ((0, ""), (1, "#"), (-1, "-")):
            if (pitch.Pitch(step).pitchClass + alter) % 12 == pitch_class:
                names.append(step + mark)
    return tuple(names)


def spelled_tonic(tonic: str, pitch_class: int, mode: str, signatures: list[int]) -> str:
    """The name of the tonic `tonic` (music21's spelling) as the score's key signatures spell it.

    Of the enharmonic names of the tonic, the one whose key signature is nearest (on the circle of fifths) to one
    of the score's wins: the signature's own keys exactly (6 sharps: F# major or D# minor, never Gb or Eb), any
    other key in the signature's direction (4 sharps: G# major, not Ab). Beyond 7 sharps or flats each step counts
    double, so that C major in 7 sharps stays C, not B#. Ties keep the opening signature's choice, then the
    profile's own. Without a signature the profile's spelling stands."""
    if not signatures:
        return tonic

    def cost(name: str) -> tuple[int, int, int]:
        sharps = _sharps(name, mode)
        distances = [abs(sharps - signature) + 2 * max(0, abs(sharps) - 7) for signature in signatures]
        nearest = min(distances)
        return nearest, distances.index(nearest), 0 if name == tonic else 1

    return min(_spellings(pitch_class), key=cost)


# --- Key finding --------------------------------------------------------------------------------------------------
# music21's `analyze(profile)` builds the score's duration-weighted pitch-class histogram, correlates it with the
# profile rotated to each of the 24 keys, and makes a `key.Key` of every one of them (~0.4 ms each: 24 per profile,
# 120 for the five profiles, most of key_analysis's time). Every profile correlates the same histogram, so it is
# built once per score here, and keys are carried as names until a `key.Key` is asked for. The arithmetic is
# music21's own, step for step, so the correlations are the same floats (tests/tools/correctness/test_keys.py
# compares them with `analyze` on the corpus).


@dataclass(frozen=True)
class KeyGuess:
    """One key a profile proposes: its tonic in music21's spelling (`B-`), pitch class, mode and correlation."""

    tonic: str
    pitch_class: int
    mode: str
    correlation: float


@lru_cache(maxsize=len(KEY_ALGORITHMS))
def _profile(profile: str) -> tuple[tuple[float, ...], tuple[float, ...], frozenset[str], frozenset[str]]:
    """The profile's major and minor weights and the tonic names it accepts (others are respelled)."""
    analyser = discrete.analysisClassFromMethodName(profile)()
    return (
        tuple(analyser.getWeights("major")),
        tuple(analyser.getWeights("minor")),
        frozenset(analyser.keysValidMajor),
        frozenset(analyser.keysValidMinor),
    )


def _tonic_pitch(pitch_class: int, mode: str, profile: str) -> pitch.Pitch:
    """The tonic music21 names for a pitch class, in the spelling the profile accepts (`_bestKeyEnharmonic`)."""
    _, _, valid_major, valid_minor = _profile(profile)
    tonic = pitch.Pitch(pitch_class)
    if tonic.name not in (valid_major if mode == "major" else valid_minor):
        tonic.getEnharmonic(inPlace=True)
    return tonic


@lru_cache(maxsize=24 * len(KEY_ALGORITHMS))
def _tonic_name(pitch_class: int, mode: str, profile: str) -> str:
    return _tonic_pitch(pitch_class, mode, profile).name


def _histogram(music: stream.Score) -> list[Any] | None:
    """The pitch-class histogram music21's key finding reads (each pitch's quarter length); None when nothing
    pitched sounds.

    music21 sums in the order of the flattened score, which `flatten()` builds as a whole new stream. The notes
    are read by `recurse()` instead, with no stream built, in another order: the sums are the same to the last bit
    while every length is a float, as music21 keeps a length a float only when it is a fraction with a power of two
    below 2**16 as denominator, whose sums are exact. A length that is a Fraction (a tuplet) would make the order
    matter: then the score is flattened and summed in music21's order."""
    try:
        return _summed(music.recurse().notes, floats_only=True)
    except _OrderMatters:
        return _summed(music.flatten().notes, floats_only=False)


class _OrderMatters(Exception):
    """A length that is not a float: its sums depend on the order of the notes."""


def _summed(notes: Iterable[note.GeneralNote], *, floats_only: bool) -> list[Any] | None:
    histogram: list[Any] = [0] * 12
    found = False
    for element in notes:
        if isinstance(element, note.Unpitched):
            continue
        length = element.quarterLength
        if floats_only and not isinstance(length, float):
            raise _OrderMatters
        found = True
        for p in element.pitches:
            histogram[p.pitchClass] += length
    return histogram if found else None


def _correlations(histogram: list[Any], weights: tuple[float, ...]) -> list[float]:
    """The correlation of the histogram with `weights` rotated to each tonic (music21's `_getDifference`)."""
    profile_average = sum(weights) / len(weights)
    histogram_average = sum(histogram) / len(histogram)
    found = []
    for tonic in range(12):
        top = bottom_right = bottom_left = 0.0
        for pc in range(12):
            weight = weights[(pc - tonic) % 12] - profile_average
            share = histogram[pc] - histogram_average
            top = top + weight * share
            bottom_right = bottom_right + weight**2
            bottom_left = bottom_left + share**2
        found.append(
            0.0 if bottom_right == 0 or bottom_left == 0 else float(top / ((bottom_right * bottom_left) ** 0.5))
        )
    return found


def profile_keys(music: stream.Score, profile: str) -> tuple[KeyGuess, ...]:
    """Every key by the profile's correlation with the score as it sounds (`derived.sounding`), best first: what
    `music.toSoundingPitch().analyze(profile)` returns as its key and `alternateInterpretations`, in the same order
    and spelling (music21's `analyze` reads a transposing instrument's notes as written)."""
    music = sounding(music)

    def ranked() -> tuple[KeyGuess, ...]:
        histogram = derived(music, "pitch-class histogram", lambda: _histogram(music))
        if histogram is None:
            raise AnalysisError("The score has no pitched notes to find a key in (unpitched percussion has none).")
        major, minor, _, _ = _profile(profile)
        candidates = [(c, pc, "major") for pc, c in enumerate(_correlations(histogram, major))]
        candidates += [(c, pc, "minor") for pc, c in enumerate(_correlations(histogram, minor))]
        # music21 sorts (correlation, Pitch, mode) ascending and reverses; its pitches order as their pitch classes.
        candidates.sort(reverse=True)
        return tuple(KeyGuess(_tonic_name(pc, mode, profile), pc, mode, c) for c, pc, mode in candidates)

    return derived(music, ("profile keys", profile), ranked)


def score_key(music: stream.Score, *, fits: Callable[[KeyGuess], bool] | None = None) -> key.Key:
    """The key of the whole score (every part, as it sounds) by music21's default profile, its tonic spelled as the
    score's key signature at concert pitch spells it (a score in 6 sharps is in F# major or D# minor, never Gb or
    Eb), so that Roman numerals read against it are spelled as the score is. A new `key.Key` each call: callers may
    use it as they like. With `fits`, the likeliest key that fits among those correlating nearly as well as the best
    (within NEAR_BEST), else the best."""
    _require_notes(music)
    profile = KEY_ALGORITHMS[DEFAULT_KEY_ALGORITHM]
    ranked = profile_keys(music, profile)
    near = [guess for guess in ranked if guess.correlation >= ranked[0].correlation - NEAR_BEST]
    best = next((guess for guess in near if fits(guess)), ranked[0]) if fits is not None else ranked[0]
    tonic = spelled_tonic(best.tonic, best.pitch_class, best.mode, key_signatures(music))
    found = key.Key(_tonic_pitch(best.pitch_class, best.mode, profile) if tonic == best.tonic else tonic, best.mode)
    found.correlationCoefficient = best.correlation
    return found


@lru_cache(maxsize=64)
def _written(tonic: str) -> str:
    return pitch_name(pitch.Pitch(tonic))


def _key_dict(found: KeyGuess) -> dict[str, Any]:
    return {
        "key": f"{_written(found.tonic)} {found.mode}",
        "tonic": _written(found.tonic),
        "mode": found.mode,
        "correlation": rounded(found.correlation),
    }


def _spelled(found: KeyGuess, signatures: list[int]) -> KeyGuess:
    return replace(found, tonic=spelled_tonic(found.tonic, found.pitch_class, found.mode, signatures))


def key_analysis(music: stream.Score, *, algorithm: str = "all") -> dict[str, Any]:
    """The key of the whole score with a confidence that says how sure it is, the runner-up keys, and (for 'all')
    every profile's answer. Every part counts: the pitch-class histogram is built from the whole score as it sounds.

    Keys are named from the pitch-class profiles and spelled as the key signature spells them (`spelled_tonic`);
    `key_signature` is the opening one at concert pitch (`summary.key_signatures`: a Bb clarinet's one flat is not
    the key signature of a piece in three). `confidence` (0..1) is half the agreement (the share of the profiles
    run that name the same key, enharmonic spellings alike) plus half the margin (the best correlation minus the
    runner-up's) over `DECISIVE_MARGIN`, capped at 1; one profile alone counts as agreeing with itself. A score
    whose profiles correlate below `NO_CLEAR_KEY_BELOW` on average has no clear key: `key` is None, `confidence` 0,
    the profile's guess is in `best_guess` and `warning` says why. A key that fewer than half the profiles name, or
    with a runner-up within `CLOSE_MARGIN`, keeps its name with a `warning`."""
    _require_notes(music)
    names = list(KEY_ALGORITHMS) if algorithm == "all" else [algorithm]
    if any(name not in KEY_ALGORITHMS for name in names):
        raise AnalysisError(f"Unknown key algorithm {algorithm!r}; use one of: all, {', '.join(KEY_ALGORITHMS)}.")
    signatures = key_signatures(music)
    ranked = {name: profile_keys(music, KEY_ALGORITHMS[name]) for name in names}
    results = {name: _spelled(found[0], signatures) for name, found in ranked.items()}
    primary_name = DEFAULT_KEY_ALGORITHM if algorithm == "all" else algorithm
    primary = results[primary_name]
    alternatives = [_spelled(found, signatures) for found in ranked[primary_name][1:5]]
    agreeing = sum(
        1 for found in results.values() if (found.pitch_class, found.mode) == (primary.pitch_class, primary.mode)
    )
    share = agreeing / len(results)
    correlation = float(primary.correlation or 0.0)
    runner_up = alternatives[0] if alternatives else None
    margin = correlation - float(runner_up.correlation or 0.0) if runner_up is not None else correlation
    mean_correlation = fmean(float(found.correlation or 0.0) for found in results.values())
    clear = mean_correlation >= NO_CLEAR_KEY_BELOW
    answer = _key_dict(primary)
    warning = None
    if not clear:
        warning = (
            f"No clear key: the pitch-class profiles fit this music poorly (mean correlation {mean_correlation:.2f}, "
            f"tonal music scores {NO_CLEAR_KEY_BELOW} or more); it may be atonal or modal. Best guess: "
            f"{answer['key']}."
        )
    elif share < 0.5 or margin < CLOSE_MARGIN:
        runner_up_name = _key_dict(runner_up)["key"] if runner_up is not None else "key"
        warning = (
            f"The key is uncertain: {agreeing} of {len(results)} profiles name {answer['key']}, and the runner-up "
            f"{runner_up_name} is within {margin:.3f} of its correlation."
        )
    return {
        "key": answer["key"] if clear else None,
        "tonic": answer["tonic"] if clear else None,
        "mode": answer["mode"] if clear else None,
        "best_guess": answer["key"],
        "confidence": round(0.5 * share + 0.5 * min(max(margin, 0.0) / DECISIVE_MARGIN, 1.0), 3) if clear else 0.0,
        "agreement": f"{agreeing} of {len(results)}",
        "agreement_share": round(share, 3),
        "correlation": rounded(correlation),
        "margin": rounded(margin),
        "warning": warning,
        "key_signature": key_signature_name(signatures[0]) if signatures else None,
        "key_signature_keys": key_signature_keys(signatures[0]) if signatures else None,
        "algorithm": primary_name,
        "alternatives": [_key_dict(alt) for alt in alternatives],
        "by_algorithm": {name: _key_dict(found) for name, found in results.items()},
    }
