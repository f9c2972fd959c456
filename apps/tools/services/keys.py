"""The key of a whole score. Pure functions from a music21 stream to a dict.

The stream comes from the shared parsed-score cache, so nothing here may change it."""

from __future__ import annotations

from typing import Any

from music21 import key, stream

from apps.core.errors import AnalysisError

# music21's names for the key-finding profiles. "aarden" is the profile `analyze('key')` uses by default.
KEY_ALGORITHMS = {
    "aarden": "AardenEssen",
    "krumhansl": "KrumhanslSchmuckler",
    "bellman": "BellmanBudge",
    "temperley": "TemperleyKostkaPayne",
    "simple": "SimpleWeights",
}
DEFAULT_KEY_ALGORITHM = "aarden"


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def _require_notes(music: stream.Stream) -> None:
    if not any(True for _ in music.recurse().notes):
        raise AnalysisError("The score has no notes to analyse.")


def _key_dict(found: key.Key) -> dict[str, Any]:
    return {
        "key": f"{found.tonic.name} {found.mode}",
        "tonic": found.tonic.name,
        "mode": found.mode,
        "correlation": _round(found.correlationCoefficient),
    }


def score_key(music: stream.Score) -> key.Key:
    """The key of the whole score (every part) by music21's default profile."""
    _require_notes(music)
    return music.analyze(KEY_ALGORITHMS[DEFAULT_KEY_ALGORITHM])


def key_analysis(music: stream.Score, *, algorithm: str = "all") -> dict[str, Any]:
    """The key of the whole score with its confidence, the runner-up keys, and (for 'all') every profile's answer.

    Every part counts: the pitch-class histogram is built from the whole score, not its first part.
    """
    _require_notes(music)
    names = list(KEY_ALGORITHMS) if algorithm == "all" else [algorithm]
    if any(name not in KEY_ALGORITHMS for name in names):
        raise AnalysisError(f"Unknown key algorithm {algorithm!r}; use one of: all, {', '.join(KEY_ALGORITHMS)}.")
    results = {name: music.analyze(KEY_ALGORITHMS[name]) for name in names}
    primary_name = DEFAULT_KEY_ALGORITHM if algorithm == "all" else algorithm
    primary = results[primary_name]
    answer = _key_dict(primary)
    agreeing = sum(1 for found in results.values() if _key_dict(found)["key"] == answer["key"])
    return {
        "key": answer["key"],
        "tonic": answer["tonic"],
        "mode": answer["mode"],
        "confidence": answer["correlation"],
        "algorithm": primary_name,
        "alternatives": [_key_dict(alt) for alt in primary.alternateInterpretations[:4]],
        "by_algorithm": {name: _key_dict(found) for name, found in results.items()},
        "agreement": f"{agreeing} of {len(results)}",
    }
