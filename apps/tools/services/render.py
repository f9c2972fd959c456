"""Engraving notation as SVG with verovio, from the score's MusicXML."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import verovio
from music21 import stream
from music21.exceptions21 import Music21Exception
from music21.musicxml.m21ToXml import GeneralObjectExporter

from apps.core.errors import AnalysisError, InvalidArguments, UnprocessableScore

_OPTIONS = {
    "pageWidth": 2100,
    "pageHeight": 2970,
    "adjustPageHeight": True,
    "scale": 40,
    "footer": "none",
    "svgViewBox": True,
}
_RESOURCES = str(Path(verovio.__file__).parent / "data")
# A verovio toolkit holds the loaded document: one per thread, so concurrent renders never share one.
_local = threading.local()


def _toolkit() -> verovio.toolkit:
    toolkit = getattr(_local, "toolkit", None)
    if toolkit is None:
        verovio.enableLog(verovio.LOG_OFF)
        # verovio remembers its font resources per thread, set only in the thread that imported it: worker
        # threads must point their toolkit at the bundled data themselves, or every render fails.
        toolkit = verovio.toolkit(False)
        toolkit.setResourcePath(_RESOURCES)
        toolkit.setOptions(_OPTIONS)
        _local.toolkit = toolkit
    return toolkit


def render_svg(
    score: stream.Score, *, measure_start: int | None = None, measure_end: int | None = None, page: int = 1
) -> dict[str, Any]:
    """SVG of one page of the score, or of the measures `measure_start`..`measure_end` (inclusive)."""
    selection = score
    if measure_start is not None or measure_end is not None:
        selection = _measure_range(score, measure_start, measure_end)
    toolkit = _toolkit()
    if not toolkit.loadData(musicxml_text(selection)):
        raise AnalysisError("The notation renderer could not read this score's MusicXML.")
    page_count = toolkit.getPageCount()
    if not 1 <= page <= page_count:
        raise InvalidArguments(f"page must be between 1 and {page_count} for this selection, got {page}.")
    return {"svg": toolkit.renderToSVG(page), "page": page, "page_count": page_count}


def musicxml_text(score: stream.Stream) -> str:
    """The score written as MusicXML, which is also what verovio engraves. A score music21 cannot write (a
    duration MusicXML has no name for, such as a 2048th note) is the caller's to change: UnprocessableScore."""
    try:
        return GeneralObjectExporter(score).parse().decode("utf-8")
    except Music21Exception as exc:
        raise UnprocessableScore(f"This score cannot be written as MusicXML: {exc}") from None


def _measure_range(score: stream.Score, start: int | None, end: int | None) -> stream.Score:
    numbers = sorted({m.number for m in score.recurse().getElementsByClass(stream.Measure)})
    if not numbers:
        raise AnalysisError("This score has no measures to select from.")
    first, last = numbers[0], numbers[-1]
    # Each bound given is checked against the score before the two are compared: a measure_start past the end
    # alone is out of range, not "after" a measure_end the caller never gave.
    for name, given in (("measure_start", start), ("measure_end", end)):
        if given is not None and not first <= given <= last:
            raise InvalidArguments(
                f"{name} {given} is not a measure of this score: its measures are numbered {first} to {last}."
            )
    start = first if start is None else start
    end = last if end is None else end
    if start > end:
        raise InvalidArguments(f"measure_start ({start}) is after measure_end ({end}).")
    return score.measures(start, end)
