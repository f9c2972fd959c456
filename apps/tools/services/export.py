"""Writing scores out in formats music21 (or verovio) really produces. Content is returned, never a server path."""

from __future__ import annotations

import base64
import io
import zipfile
from typing import Any

from music21 import bar, midi, repeat, stream
from music21.braille import translate as braille
from music21.exceptions21 import Music21Exception

from apps.core.errors import UnprocessableScore, UnsupportedFormat
from apps.tools.services.render import musicxml_text, render_svg
from apps.tools.services.summary import part_label

MEDIA_TYPES = {
    "musicxml": "application/vnd.recordare.musicxml+xml",
    "mxl": "application/vnd.recordare.musicxml",
    "midi": "audio/midi",
    "svg": "image/svg+xml",
    "braille": "text/plain; charset=utf-8",
}
EXPORT_FORMATS = tuple(MEDIA_TYPES)
# Formats people ask for that this server cannot honestly write: refused by name rather than faked.
REFUSED_FORMATS = {
    "abc": "music21 can read ABC but has no ABC writer",
    "humdrum": "music21 can read Humdrum but has no Humdrum writer",
    "kern": "music21 can read Humdrum **kern but has no writer for it",
    "lilypond": "music21 10 no longer writes LilyPond",
    "pdf": "PDF needs an engraving toolchain this server does not run; export svg instead",
    "png": "raster images are not rendered here; export svg instead",
}
# What to try instead when music21 cannot write a score in a format.
_INSTEAD = {
    "musicxml": "simplify the durations or tuplets music21 cannot name, or export midi",
    "mxl": "simplify the durations or tuplets music21 cannot name, or export midi",
    "midi": "export musicxml or mxl, which keep the score as written",
    "svg": "export musicxml and engrave it elsewhere, or render a smaller range of measures with render_score",
    "braille": "export musicxml and transcribe it with a braille tool, or try a single part",
}
# What each lossy format cannot carry, returned with the content so that nobody mistakes a re-import for the original.
FORMAT_WARNINGS = {
    "midi": [
        "MIDI plays the music as performed: repeats are written out, so repeated bars appear twice.",
        "MIDI has no bar lines, staves or spelling: a pickup (anacrusis) is not marked, enharmonic spelling and "
        "ties are not kept, and each part or staff becomes one track.",
    ],
    "braille": ["Braille music is read by a person; it cannot be imported back."],
    "svg": ["SVG is a picture of the notation; it cannot be imported back."],
}
_CONTAINER_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<container><rootfiles>'
    '<rootfile full-path="score.musicxml" media-type="application/vnd.recordare.musicxml+xml"/>'
    "</rootfiles></container>\n"
)


def export_score(score: stream.Score, *, fmt: str) -> dict[str, Any]:
    """The score written as `fmt`: text formats as UTF-8 text, binary ones as base64, with the media type."""
    fmt = fmt.lower().strip()
    if fmt in REFUSED_FORMATS:
        raise UnsupportedFormat(
            f"Cannot export {fmt!r}: {REFUSED_FORMATS[fmt]}. Available formats: {', '.join(EXPORT_FORMATS)}.",
            extra={"supported": list(EXPORT_FORMATS)},
        )
    if fmt not in MEDIA_TYPES:
        raise UnsupportedFormat(
            f"Unknown export format {fmt!r}. Available formats: {', '.join(EXPORT_FORMATS)}.",
            extra={"supported": list(EXPORT_FORMATS)},
        )
    try:
        content = _written(score, fmt)
    except UnprocessableScore:
        raise
    except repeat.ExpanderException:
        # MIDI has no repeat signs, so music21 plays them out first; incomplete repeat signs cannot be played out.
        raise UnprocessableScore(
            f"This score cannot be written as MIDI: music21 cannot play out its repeats ({_repeat_problem(score)}). "
            f"Try instead: {_INSTEAD['midi']}, or complete or remove the repeat signs and import the score again.",
            extra={"reason": "unexpandable_repeats"},
        ) from None
    except Music21Exception as exc:  # music21's writers refuse what the score holds: the caller's score to change
        raise UnprocessableScore(
            f"This score cannot be written as {fmt}: {exc}. Try instead: {_INSTEAD[fmt]}."
        ) from None
    if isinstance(content, bytes):
        return {
            "format": fmt,
            "media_type": MEDIA_TYPES[fmt],
            "encoding": "base64",
            "size_bytes": len(content),
            "content": base64.b64encode(content).decode("ascii"),
            "warnings": FORMAT_WARNINGS.get(fmt, []),
        }
    return {
        "format": fmt,
        "media_type": MEDIA_TYPES[fmt],
        "encoding": "utf-8",
        "size_bytes": len(content.encode("utf-8")),
        "content": content,
        "warnings": FORMAT_WARNINGS.get(fmt, []),
    }


def _written(score: stream.Score, fmt: str) -> str | bytes:
    if fmt == "musicxml":
        return musicxml_text(score)
    if fmt == "mxl":
        return _mxl_bytes(score)
    if fmt == "midi":
        _check_repeats_agree(score)
        return bytes(midi.translate.streamToMidiFile(score).writestr())
    if fmt == "svg":
        return str(render_svg(score)["svg"])
    return str(braille.objectToBraille(score))


def _check_repeats_agree(score: stream.Score) -> None:
    """music21 plays each part's repeats out on its own: parts whose repeat signs differ would come out of step in
    the MIDI file, silently. Refuse that instead, naming the parts."""
    parts = list(score.parts)
    signs = [_repeat_signs(part) for part in parts]
    for index, part_signs in enumerate(signs[1:], start=1):
        if part_signs != signs[0]:
            raise UnprocessableScore(
                f"This score cannot be written as MIDI: part 0 ({part_label(parts[0], 0)}) has "
                f"{_listed(signs[0])} but part {index} ({part_label(parts[index], index)}) has {_listed(part_signs)}, "
                f"so playing the repeats out would put them out of step. Try instead: {_INSTEAD['midi']}, or give "
                "every part the same repeat signs.",
                extra={"reason": "unexpandable_repeats"},
            )


def _repeat_signs(part: stream.Stream) -> list[tuple[str, int]]:
    """("start"/"end", printed bar number) of each repeat sign in the part, in order. Bars, not offsets: parts of
    the same score may place the same bar at offsets a rounding apart."""
    return [
        (str(line.direction), measure.measureNumber)
        for measure in part.getElementsByClass(stream.Measure)
        for line in (measure.leftBarline, measure.rightBarline)
        if isinstance(line, bar.Repeat)
    ]


def _listed(signs: list[tuple[str, int]]) -> str:
    if not signs:
        return "no repeat signs"
    return "repeat signs " + ", ".join(f"{direction} at bar {number}" for direction, number in signs)


def _repeat_problem(score: stream.Score) -> str:
    """Name the first repeat sign that has no partner, by printed bar number, for the error message."""
    part = score.parts.first() or score
    open_start: str | None = None
    for position, measure in enumerate(part.getElementsByClass(stream.Measure), start=1):
        for line in (measure.leftBarline, measure.rightBarline):
            if not isinstance(line, bar.Repeat):
                continue
            if line.direction == "start":
                if open_start is not None:
                    return f"the start repeat at {open_start} has no end repeat before the next start"
                # Bar numbers can repeat (Humdrum restarts them after repeat signs): the position tells them apart.
                open_start = f"bar {measure.measureNumber} (measure {position} from the start)"
            else:
                open_start = None
    if open_start is not None:
        return f"the start repeat at {open_start} has no end repeat"
    jump = part.recurse().getElementsByClass(repeat.RepeatExpressionCommand).first()
    if jump is not None:
        return f"its {jump.text or type(jump).__name__} has no Segno, Coda or Fine it can use"
    return "its repeat signs or first and second endings do not form a repeat music21 can follow"


def _mxl_bytes(score: stream.Score) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        # The mimetype entry comes first and uncompressed, as the MusicXML container format asks.
        archive.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.recordare.musicxml", zipfile.ZIP_STORED)
        archive.writestr("META-INF/container.xml", _CONTAINER_XML)
        archive.writestr("score.musicxml", musicxml_text(score))
    return buffer.getvalue()
