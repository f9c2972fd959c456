"""Data derived from a parsed score (the music as it sounds, its pitch-class histogram, its harmonies, each part as
one line of notes), computed once per score object and shared by every tool that reads it.

A parsed score is never changed after parsing (the parsed-score cache hands the same stream to every call, see
apps.tools.services.cache), so what is derived from it stays true for as long as the stream lives: the data is kept
beside the stream object itself, in a weak-keyed table, and leaves with it when the parsed-score cache drops the
stream. That cache is keyed by content hash, so an edited score is a new stream with nothing derived yet: there is
no second invalidation story, and memory is bounded by the same MAX_SCORES_IN_MEMORY.

What is kept here must itself be treated as read-only by every caller: other threads read the same objects."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from music21 import instrument, stream

T = TypeVar("T")

_derived: weakref.WeakKeyDictionary[stream.Stream, dict[Hashable, Any]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def derived(music: stream.Stream, name: Hashable, compute: Callable[[], T]) -> T:
    """`compute()`'s value for `music`, computed on the first call for this stream and `name` and kept with it.
    Two threads asking at once may both compute it; the answer is the same, and the first one kept wins."""
    with _lock:
        found = _derived.get(music)
        if found is not None and name in found:
            return found[name]
    value = compute()
    with _lock:
        return _derived.setdefault(music, {}).setdefault(name, value)


# --- The music as it sounds -----------------------------------------------------------------------------------------


def sounding(music: stream.Stream) -> stream.Stream:
    """The music as it sounds, which is what every analysis reads: `music` itself when it is written at sounding
    pitch, else a copy at sounding pitch (music21's `toSoundingPitch`, key signatures included), made once per
    parsed score and kept with it. `sounding(sounding(music))` is `sounding(music)`.

    A part is written at other than sounding pitch when music21 reads it so: its `atSoundingPitch` (or, when that
    is unknown, its score's) is False, as music21's MusicXML reader sets it for a part with a `<transpose>`, and it
    has a transposing instrument (a Bb clarinet sounds a major second below its written notes; the Tenor of
    trecento/PMFC_06-Jacopo-01-Aquila-Altera an octave below). Music without one costs a look at each part's flag,
    and no copy. Nothing else needs the copy: an octave clef's notes are read at their sounding octave (MusicXML's
    pitches do not follow `clef-octave-change`), and the MusicXML reader, the only one that makes ottavas, reads
    their notes at sounding pitch (`transposing = False`); a copy that is made performs any other ottava, as
    `toSoundingPitch` does."""
    if not transposing_parts(music):
        return music
    return derived(music, "sounding", lambda: _at_sounding_pitch(music))


def transposing_parts(music: stream.Stream) -> tuple[int, ...]:
    """The 0-based indices of the parts of `music` written at other than sounding pitch (`sounding`); a stream
    without parts is its own part 0."""
    return derived(music, "transposing parts", lambda: _transposing(music))


def _transposing(music: stream.Stream) -> tuple[int, ...]:
    # The score's `parts`, in their order, from its own elements: music21's `parts` sets up a filtered iteration,
    # about as long as the rest of this look at a chorale.
    parts = [e for e in music.elements if isinstance(e, stream.Part)] if isinstance(music, stream.Score) else []
    found = []
    for index, part in enumerate(parts or [music]):
        # The flags read as music21's `toSoundingPitch` reads them, but not through its `_treatAtSoundingPitch`,
        # which also converts a measure whose flag disagrees with its part: a write to the shared score.
        written = part.atSoundingPitch
        if written == "unknown":
            written = music.atSoundingPitch
        if written is not False:
            continue
        instruments = part.recurse(restoreActiveSites=False).getElementsByClass(instrument.Instrument)
        if any(each.transposition is not None and each.transposition.semitones != 0 for each in instruments):
            found.append(index)
    return tuple(found)


def _at_sounding_pitch(music: stream.Stream) -> stream.Stream:
    view = music.toSoundingPitch(inPlace=False)
    # Every copied object remembers its original (`derivation.origin`, a strong reference): kept beside the score
    # in the weak-keyed table, the copy would keep the score alive for ever. Nothing here reads the derivations.
    for element in view.recurse(includeSelf=True, restoreActiveSites=False):
        element.derivation = None
    return view
