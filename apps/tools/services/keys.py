"""The key of a whole score. Pure functions from a music21 stream to a dict.

The stream comes from the shared parsed-score cache, so nothing here may change it."""

from __future__ import annotations

from functools import lru_cache
from statistics import fmean
from typing import Any

from music21 import key, pitch, stream

from apps.core.errors import AnalysisError
from apps.tools.services.spelling import key_name, key_signature_keys, pitch_name
from apps.tools.services.summary import key_signature_name

# music21's names for the key-finding profiles. "aarden" is the profile `analyze('key')` uses by default.
KEY_ALGORITHMS = {
    "aarden": "AardenEssen",
    "krumhansl": "KrumhanslSchmuckler",
    "bellman": "BellmanBudge",
    "temperley": "TemperleyKostkaPayne",
    "simple": "SimpleWeights",
}
DEFAULT_KEY_ALGORITHM = "aarden"

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


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def _require_notes(music: stream.Stream) -> None:
    if not any(True for _ in music.recurse().notes):
        raise AnalysisError("The score has no notes to analyse.")


def key_signatures(music: stream.Stream) -> list[int]:
    """The score's key signatures as sharps (negative: flats), distinct, the opening one first."""
    found: dict[int, None] = {}
    for signature in music.recurse().getElementsByClass(key.KeySignature):
        found.setdefault(signature.sharps, None)
    return list(found)


@lru_cache(maxsize=128)
def _sharps(tonic: str, mode: str) -> int:
    return key.Key(tonic, mode).sharps


def _spellings(pitch_class: int) -> list[str]:
    """The tonic names of `pitch_class` with at most one sharp or flat, in music21's spelling (`E-`, `D#`)."""
    names = []
    for step in "CDEFGAB":
        for alter, mark in ((0, ""), (1, "#"), (-1, "-")):
            if (pitch.Pitch(step).pitchClass + alter) % 12 == pitch_class:
                names.append(step + mark)
    return names


def spelled_for_signatures(found: key.Key, signatures: list[int]) -> key.Key:
    """`found` with its tonic spelled as the score's key signatures spell it.

    Of the enharmonic names of the tonic, the one whose key signature is nearest (on the circle of fifths) to one
    of the score's wins: the signature's own keys exactly (6 sharps: F# major or D# minor, never Gb or Eb), any
    other key in the signature's direction (4 sharps: G# major, not Ab). Beyond 7 sharps or flats each step counts
    double, so that C major in 7 sharps stays C, not B#. Ties keep the opening signature's choice, then the
    profile's own. Without a signature the profile's spelling stands. The correlations and runner-up keys are
    carried over, the runner-ups spelled the same way."""
    if not signatures:
        return found

    def cost(name: str) -> tuple[int, int, int]:
        sharps = _sharps(name, found.mode)
        distances = [abs(sharps - signature) + 2 * max(0, abs(sharps) - 7) for signature in signatures]
        nearest = min(distances)
        return nearest, distances.index(nearest), 0 if name == found.tonic.name else 1

    best = min(_spellings(found.tonic.pitchClass), key=cost)
    if best == found.tonic.name:
        spelled = found
    else:
        spelled = key.Key(best, found.mode)
        spelled.correlationCoefficient = found.correlationCoefficient
    spelled.alternateInterpretations = [
        spelled_for_signatures(alternative, signatures) for alternative in found.alternateInterpretations
    ]
    return spelled


def score_key(music: stream.Score) -> key.Key:
    """The key of the whole score (every part) by music21's default profile, its tonic spelled as the score's key
    signature spells it (a score in 6 sharps is in F# major or D# minor, never Gb or Eb), so that Roman numerals
    read against it are spelled as the score is."""
    _require_notes(music)
    return _spelled_key(music, KEY_ALGORITHMS[DEFAULT_KEY_ALGORITHM], key_signatures(music))


def _spelled_key(music: stream.Score, profile: str, signatures: list[int]) -> key.Key:
    found = music.analyze(profile)
    # The runner-ups are spelled only as far as they are reported: 23 Key objects each would cost ~5 ms.
    alternatives, found.alternateInterpretations = found.alternateInterpretations, found.alternateInterpretations[:4]
    spelled = spelled_for_signatures(found, signatures)
    if spelled is not found:
        found.alternateInterpretations = alternatives
    return spelled


def _key_dict(found: key.Key) -> dict[str, Any]:
    return {
        "key": key_name(found),
        "tonic": pitch_name(found.tonic),
        "mode": found.mode,
        "correlation": _round(found.correlationCoefficient),
    }


def key_analysis(music: stream.Score, *, algorithm: str = "all") -> dict[str, Any]:
    """The key of the whole score with a confidence that says how sure it is, the runner-up keys, and (for 'all')
    every profile's answer. Every part counts: the pitch-class histogram is built from the whole score.

    Keys are named from the pitch-class profiles and spelled as the key signature spells them
    (`spelled_for_signatures`). `confidence` (0..1) is half the agreement (the share of the profiles run that name
    the same key, enharmonic spellings alike) plus half the margin (the best correlation minus the runner-up's)
    over `DECISIVE_MARGIN`, capped at 1; one profile alone counts as agreeing with itself. A score whose profiles
    correlate below `NO_CLEAR_KEY_BELOW` on average has no clear key: `key` is None, `confidence` 0, the profile's
    guess is in `best_guess` and `warning` says why. A key that fewer than half the profiles name, or with a
    runner-up within `CLOSE_MARGIN`, keeps its name with a `warning`."""
    _require_notes(music)
    names = list(KEY_ALGORITHMS) if algorithm == "all" else [algorithm]
    if any(name not in KEY_ALGORITHMS for name in names):
        raise AnalysisError(f"Unknown key algorithm {algorithm!r}; use one of: all, {', '.join(KEY_ALGORITHMS)}.")
    signatures = key_signatures(music)
    results = {name: _spelled_key(music, KEY_ALGORITHMS[name], signatures) for name in names}
    primary_name = DEFAULT_KEY_ALGORITHM if algorithm == "all" else algorithm
    primary = results[primary_name]
    agreeing = sum(
        1
        for found in results.values()
        if (found.tonic.pitchClass, found.mode) == (primary.tonic.pitchClass, primary.mode)
    )
    share = agreeing / len(results)
    correlation = float(primary.correlationCoefficient or 0.0)
    runner_up = primary.alternateInterpretations[0] if primary.alternateInterpretations else None
    margin = correlation - float(runner_up.correlationCoefficient or 0.0) if runner_up is not None else correlation
    mean_correlation = fmean(float(found.correlationCoefficient or 0.0) for found in results.values())
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
        warning = (
            f"The key is uncertain: {agreeing} of {len(results)} profiles name {answer['key']}, and the runner-up "
            f"{key_name(runner_up) if runner_up is not None else 'key'} is within {margin:.3f} of its correlation."
        )
    return {
        "key": answer["key"] if clear else None,
        "tonic": answer["tonic"] if clear else None,
        "mode": answer["mode"] if clear else None,
        "best_guess": answer["key"],
        "confidence": round(0.5 * share + 0.5 * min(max(margin, 0.0) / DECISIVE_MARGIN, 1.0), 3) if clear else 0.0,
        "agreement": f"{agreeing} of {len(results)}",
        "agreement_share": round(share, 3),
        "correlation": _round(correlation),
        "margin": _round(margin),
        "warning": warning,
        "key_signature": key_signature_name(signatures[0]) if signatures else None,
        "key_signature_keys": key_signature_keys(signatures[0]) if signatures else None,
        "algorithm": primary_name,
        "alternatives": [_key_dict(alt) for alt in primary.alternateInterpretations[:4]],
        "by_algorithm": {name: _key_dict(found) for name, found in results.items()},
    }
