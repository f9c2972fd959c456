"""How pitches and keys are written in every result: as a musician writes them in plain text, the letter then its
accidentals, `#` for a sharp and `b` for a flat (`F#`, `Bb`, `C##`, `Ebb`), with the octave after when there is one
(`Bb3`); keys as tonic and mode (`F# minor`, `Bb major`). music21's own spelling writes a flat as `-` (`B-`), which
no reader expects. The spelling is the score's own: a pitch is never respelled enharmonically here."""

from __future__ import annotations

from music21 import key, pitch


def pitch_name(p: pitch.Pitch, *, octave: bool = False) -> str:
    """`p` as written in the score (`Bb`, `F#`; `Bb3` with `octave` when the pitch has one)."""
    accidental = p.accidental.modifier.replace("-", "b") if p.accidental is not None else ""
    name = f"{p.step}{accidental}"
    return f"{name}{p.octave}" if octave and p.octave is not None else name


def pitch_text(name: str) -> str:
    """A music21 pitch name (`B-4`, `F#`) spelled as `pitch_name` spells it."""
    p = pitch.Pitch(name)
    return pitch_name(p, octave=any(ch.isdigit() for ch in name))


def key_name(k: key.Key) -> str:
    """`F# minor`, `Bb major`."""
    return f"{pitch_name(k.tonic)} {k.mode}"


# Letters along the circle of fifths: a signature of n sharps (negative: flats) is the major key FIFTHS[n + 1]
# and the minor key FIFTHS[n + 4], each letter sharpened once per 7 steps past B and flattened once per 7 before F.
_FIFTHS = "FCGDAEB"


def _on_circle(position: int) -> str:
    accidentals, letter = divmod(position, 7)
    return _FIFTHS[letter] + ("#" * accidentals if accidentals > 0 else "b" * -accidentals)


def key_signature_keys(sharps: int) -> str:
    """The two keys a signature of `sharps` (negative: flats) writes, major first: `F# major / D# minor`.

    Counted along the circle of fifths rather than by building music21 keys, which cost over a millisecond each
    (a score_info call reads this for every signature of the score)."""
    return f"{_on_circle(sharps + 1)} major / {_on_circle(sharps + 4)} minor"
