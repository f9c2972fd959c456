"""How figures are rounded in every result."""

from __future__ import annotations


def rounded(value: float | None) -> float | None:
    """`value` to 3 decimals (None stays None): enough for correlations, beats and lengths in quarter notes."""
    return None if value is None else round(float(value), 3)
