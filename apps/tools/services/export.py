"""Writing scores out in formats music21 (or verovio) really produces. Content is returned, never a server path."""

from __future__ import annotations

import base64
import io
import zipfile
from typing import Any

from music21 import midi, stream
from music21.braille import translate as braille
from music21.exceptions21 import Music21Exception

from apps.core.errors import UnprocessableScore, UnsupportedFormat
from apps.tools.services.render import musicxml_text, render_svg

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
    except Music21Exception as exc:  # music21's writers refuse what the score holds: the caller's score to change
        raise UnprocessableScore(f"This score cannot be written as {fmt}: {exc}") from None
    if isinstance(content, bytes):
        return {
            "format": fmt,
            "media_type": MEDIA_TYPES[fmt],
            "encoding": "base64",
            "size_bytes": len(content),
            "content": base64.b64encode(content).decode("ascii"),
        }
    return {
        "format": fmt,
        "media_type": MEDIA_TYPES[fmt],
        "encoding": "utf-8",
        "size_bytes": len(content.encode("utf-8")),
        "content": content,
    }


def _written(score: stream.Score, fmt: str) -> str | bytes:
    if fmt == "musicxml":
        return musicxml_text(score)
    if fmt == "mxl":
        return _mxl_bytes(score)
    if fmt == "midi":
        return bytes(midi.translate.streamToMidiFile(score).writestr())
    if fmt == "svg":
        return str(render_svg(score)["svg"])
    return str(braille.objectToBraille(score))


def _mxl_bytes(score: stream.Score) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        # The mimetype entry comes first and uncompressed, as the MusicXML container format asks.
        archive.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.recordare.musicxml", zipfile.ZIP_STORED)
        archive.writestr("META-INF/container.xml", _CONTAINER_XML)
        archive.writestr("score.musicxml", musicxml_text(score))
    return buffer.getvalue()
