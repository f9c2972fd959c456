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


def key_signature_keys(sharps: int) -> str:
    """The two keys a signature of `sharps` (negative: flats) writes, major first: `F# major / D# minor`."""
    signature = key.KeySignature(sharps)
    return f"{key_name(signature.asKey('major'))} / {key_name(signature.asKey('minor'))}"
