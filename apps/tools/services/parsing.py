"""Turning user-supplied sources into music21 scores, safely.

Everything here is pure: a source goes in, a `music21.stream.Score` comes out, or a domain error that says what was
wrong. Limits are applied before any parser sees the input; XML goes through defusedxml (no entity expansion, no
external references) before music21 builds a score from the already-parsed tree.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import logging
import pickle
import re
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from music21 import abcFormat, common, converter, corpus, freezeThaw, meter, midi, stream
from music21.midi.base import MetaEvents
from music21.midi.translate import midiFileToStream
from music21.musicxml.xmlToM21 import MusicXMLImporter

from apps.core.errors import InvalidArguments, RejectedInput, ScoreParseError, UnsupportedFormat

logger = logging.getLogger(__name__)

SOURCE_TYPES = ("corpus", "tinynotation", "abc", "musicxml", "midi", "humdrum", "file", "auto")

# MusicXML rarely nests deeper than a dozen levels; anything far past that is built to exhaust a parser.
MAX_XML_DEPTH = 64
# A compressed MusicXML file may not unpack to more than this many times its own size limit.
MAX_MXL_EXPANSION = 4
# music21 lays out the beats of a time signature's bar in time that grows faster than the square of their number:
# a bar of 64 beats takes a noticeable moment, one of a thousand longer than a call's time limit, so that a
# 13-byte source ("99999/1 c1 d1") held a tool process until it was killed. No printed music has more than a few
# dozen beats in a bar; a time signature with more is refused before music21 sees it.
MAX_BEATS_PER_BAR = 64

# A measure can hold far more than its meter's bar: one 4/4 measure of MusicXML with a note of 99,999,999 quarters is
# read in milliseconds, but every tool that writes the score out (export, render, transpose, harmonise) has music21
# split it into bars, 25 million of them, taking memory without end. Printed music holds a few bars' worth in one
# measure now and then (a cadenza, music without bar lines), so the bound is on the bars a score's measures hold
# beyond one each, over the whole score: past it, the score is refused at import.
MAX_OVERFULL_BARS = 1000
DEFAULT_BAR = 4.0  # quarters: music21 writes a measure without a meter as 4/4
# A MIDI file says how long its notes are only by the time between events: 37 bytes can hold one note of 268 million
# quarters, which music21 splits into bars without end as it reads the file. Hours of music are under this bound.
MAX_MIDI_QUARTERS = 200_000
# A MusicXML repeat played this many times over, or more, is not music but a way to make the MIDI export and the
# renderer, which write repeats out, run without end.
MAX_REPEAT_TIMES = 100
# music21's tinyNotation reader matches each word against patterns in time that grows with the square of its
# length, holding the interpreter meanwhile: 150,000 letters without a space took minutes. A note is a few
# characters ("c#'4.~", "trip{c8").
MAX_TINYNOTATION_WORD = 64

FILE_EXTENSIONS = {
    ".xml": "musicxml",
    ".musicxml": "musicxml",
    ".mxl": "mxl",
    ".mid": "midi",
    ".midi": "midi",
    ".abc": "abc",
    ".krn": "humdrum",
    ".tny": "tinynotation",
}
# A source that is one line naming a file or a URL: /etc/passwd, ~/tune.abc, ../../x.abc, C:\scores\x.abc, a/../b,
# file:///etc/passwd, https://example.org/x.abc. No text score, corpus path or base64 MIDI is written like that; a
# caller sending one either expects the server to open it or is probing whether it does.
PATH_OR_URL = re.compile(
    r"^(?:[/\\~]|\.{1,2}[/\\]|[A-Za-z]:[/\\]|[A-Za-z][A-Za-z0-9+.\-]*://|file:)|(?:^|[/\\])\.\.(?:[/\\]|$)"
)
# What each type's source is, said when a path or URL is sent instead.
SOURCE_CONTENTS = {
    "corpus": "the name of a work in music21's corpus (such as 'bach/bwv66.6')",
    "midi": "the MIDI file's bytes in base64",
}
# Segments as the corpus names its works: spaces and parentheses too ('trecento/PMFC_04-Cara mi donna').
CORPUS_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-() ]*(/[A-Za-z0-9_][A-Za-z0-9_.\-() ]*)*$")


@dataclass(frozen=True)
class ParsedSource:
    """A parsed score and the source to store for it (text or bytes) under its real format."""

    score: stream.Score
    format: str
    text: str = ""
    data: bytes | None = None
    origin: str = ""


def parse_source(source_type: str, source: object, *, max_bytes: int, import_root: Path | None) -> ParsedSource:
    """Parse `source` given as `source_type` (one of SOURCE_TYPES) into a score, within `max_bytes`."""
    if source_type not in SOURCE_TYPES:
        raise UnsupportedFormat(
            f"Unknown source_type {source_type!r}; use one of: {', '.join(SOURCE_TYPES)}.",
            extra={"supported": list(SOURCE_TYPES)},
        )
    if not isinstance(source, str):
        raise InvalidArguments(f"source must be a string, got {type(source).__name__}.")
    _check_size(len(source.encode("utf-8", errors="surrogatepass")), max_bytes, "source")
    if not source.strip():
        # Said here for every type: music21's ABC and Humdrum readers answer an empty text with their internals.
        raise InvalidArguments(f"source is empty: give the music to import as {source_type!r}.")
    if source_type != "file":
        _check_not_a_path(source, source_type)
    if source_type == "auto":
        source_type = detect_source_type(source)
    parsed = _parse_new(source_type, source, max_bytes=max_bytes, import_root=import_root)
    _check_measures(parsed.score)
    return parsed


def _parse_new(source_type: str, source: str, *, max_bytes: int, import_root: Path | None) -> ParsedSource:
    if source_type == "file":
        return _parse_file(source, max_bytes=max_bytes, import_root=import_root)
    if source_type == "midi":
        data = decode_base64(source, what="MIDI source")
        _check_size(len(data), max_bytes, "decoded MIDI")
        return ParsedSource(parse_stored("midi", data=data), "midi", data=data)
    _check_no_nul(source, "source")
    if source_type == "corpus":
        path = source.strip()
        _check_one_corpus_work(path)
        return ParsedSource(parse_stored("corpus", text=path), "corpus", text=path, origin=path)
    return ParsedSource(_parse(_IMPORT_PARSERS, source_type, text=source), source_type, text=source)


def _check_not_a_path(source: str, source_type: str) -> None:
    """Refuse a source that names a file or URL instead of holding the music (see PATH_OR_URL), whatever its type:
    the server opens no file or URL a caller names, except a `file` import under SCORE_IMPORT_ROOT."""
    stripped = source.strip()
    if "\n" in stripped or not PATH_OR_URL.search(stripped):
        return
    shown = stripped if len(stripped) <= 80 else stripped[:80] + "..."
    contents = SOURCE_CONTENTS.get(source_type, "the text of the music itself")
    raise RejectedInput(
        f"The source {shown!r} is a file path or URL, which the server does not open: a {source_type!r} source is "
        f"{contents}. To import a file on the server, use source_type 'file' with its name in the import folder "
        "(SCORE_IMPORT_ROOT).",
        kind="path_traversal",
    )


def _check_no_nul(text: str, what: str) -> None:
    """No text format has a use for a NUL character, and the database stores none in text."""
    at = text.find("\x00")
    if at >= 0:
        raise InvalidArguments(f"{what} holds a NUL character (at character {at}), which no text score format uses.")


def parse_stored(source_format: str, *, text: str = "", data: bytes | None = None) -> stream.Score:
    """Parse a source already accepted and stored (also the path for re-parsing after a cache miss)."""
    return _parse(_PARSERS, source_format, text=text, data=data)


def _parse(
    parsers: dict[str, Callable[[Any], Any]], source_format: str, *, text: str = "", data: bytes | None = None
) -> stream.Score:
    parser = parsers.get(source_format)
    if parser is None:
        raise UnsupportedFormat(f"Cannot parse stored format {source_format!r}.")
    if source_format in _WRITTEN_METERS:
        name, meter_written, plus_dropped = _WRITTEN_METERS[source_format]
        _check_meters(name, (found.group(1) for found in meter_written.finditer(text)), plus_dropped=plus_dropped)
    try:
        parsed = parser(data if data is not None else text)
    except (RejectedInput, ScoreParseError, InvalidArguments):
        raise
    except Exception as exc:  # music21's parsers raise a wide variety of exceptions on bad input
        raise ScoreParseError(
            f"The {source_format} source could not be parsed: {_describe(exc, source_format)}"
        ) from exc
    return _as_score(parsed, source_format)


def detect_source_type(source: str) -> str:
    """Guess the type of a source from its content, or say clearly that it cannot be told."""
    head = source.lstrip()[:2000]
    if head.startswith("<"):
        return "musicxml"
    if head.startswith("TVRoZ"):  # base64 of "MThd", the MIDI header
        return "midi"
    if head.startswith("**") or "\n**kern" in head or head.startswith("!!"):
        return "humdrum"
    if re.search(r"^X:\s*\d+", head, re.MULTILINE) or re.search(r"^K:", head, re.MULTILINE):
        return "abc"
    if head.lower().startswith("tinynotation:"):
        return "tinynotation"
    stripped = source.strip()
    if CORPUS_PATH.match(stripped) and _in_corpus(stripped):
        return "corpus"
    if re.match(r"^(\d+/\d+\s+)?[a-gA-Gr][#\-n]*['\d,.~]*", stripped):
        return "tinynotation"
    raise UnsupportedFormat(
        "Could not tell the source type from the content; pass source_type explicitly "
        f"({', '.join(t for t in SOURCE_TYPES if t != 'auto')})."
    )


def import_warnings(source_format: str) -> list[str]:
    """What an import from `source_format` cannot keep, said rather than silently lost. A MIDI file carries no
    trace of a pickup (music21 writes one from tick 0, like any bar) so it cannot be detected, only declared."""
    if source_format != "midi":
        return []
    warnings = [
        "MIDI has no bar lines or pickup marking: music21 starts bar 1 on the file's first beat, so a pickup "
        "(anacrusis) is merged into bar 1 and later bars are numbered one lower than printed. Import MusicXML to "
        "keep the printed bars.",
        "Onsets and durations were rounded to the nearest sixteenth or eighth-note triplet, notes crossing bar "
        "lines were split into tied notes, and pitches were spelled from MIDI note numbers.",
    ]
    return warnings


def decode_base64(source: str, *, what: str) -> bytes:
    cleaned = "".join(source.split())
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidArguments(f"The {what} is not valid base64 ({exc}).") from exc


def safe_xml_root(text: str | bytes) -> Element:
    """Parse XML with entity expansion and external references forbidden, and bound its depth."""
    try:
        root = SafeET.fromstring(text, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise RejectedInput(
            f"The XML declares entities or external references, which are refused ({type(exc).__name__}).",
            kind="xml_entities",
        ) from exc
    except ParseError as exc:
        raise ScoreParseError(f"The MusicXML is not well-formed XML: {exc}.") from exc
    _check_depth(root)
    return root


def _check_depth(root: Element) -> None:
    stack = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        if depth > MAX_XML_DEPTH:
            raise RejectedInput(f"The XML nests deeper than {MAX_XML_DEPTH} levels.", kind="xml_depth")
        stack.extend((child, depth + 1) for child in element)


# Where each text format writes a time signature's beats (music21's readers ignore anything else that looks like
# one): a tinyNotation token "3/4", an ABC field "M:3/4" (in the header or inline), a Humdrum token "*M3/4". Each
# with its format's name, and whether music21's reader drops the plus signs of an additive numerator (ABC's does).
_WRITTEN_METERS = {
    "tinynotation": ("tinyNotation", re.compile(r"(?<!\S)(\d+)/\d+(?!\S)"), False),
    "abc": ("ABC", re.compile(r"M:\s*([\d+ ]+)/"), True),
    "humdrum": ("Humdrum", re.compile(r"\*M([\d+]+)/"), False),
}


def _check_meters(source: str, beats_written: Iterable[str], *, plus_dropped: bool = False) -> None:
    """Refuse a source with a time signature of more than MAX_BEATS_PER_BAR beats (see there). `beats_written`:
    each time signature's numerator as the `source` (its format's name) writes it."""
    for written in beats_written:
        beats = _beats(written, plus_dropped=plus_dropped)
        if beats > MAX_BEATS_PER_BAR:
            written = written.strip()
            shown = written if len(written) <= 12 else written[:12] + "..."
            raise RejectedInput(
                f"The {source} source has a time signature of {shown} beats in a bar; this server reads at most "
                f"{MAX_BEATS_PER_BAR} (music21 would take minutes to lay out such a bar).",
                kind="oversize",
            )


def _beats(written: str, *, plus_dropped: bool) -> int:
    """The beats music21 makes of a time signature's written numerator: "3+3+2" is 8, but 332 where its reader
    drops the plus signs."""
    parts = re.findall(r"\d+", written)
    if sum(len(part) for part in parts) > 6:  # past any bound, and past what int() reads of a long string
        return 10**6
    if plus_dropped:
        return int("".join(parts) or 0)
    return sum(int(part) for part in parts)


def _check_measures(score: stream.Score) -> None:
    """Refuse `score` if its measures hold more than MAX_OVERFULL_BARS bars beyond one each (see there). A part
    without measures (ABC without bar lines) is taken as one measure: music21 writes all of it out as bars."""
    overfull, worst, worst_bars = 0.0, (0, 0), 0.0
    for part_number, part in enumerate(list(score.parts) or [score], start=1):
        measures = [element for element in part.elements if isinstance(element, stream.Measure)] or [part]
        bar = DEFAULT_BAR
        for measure in measures:
            for element in measure.elements:  # the meter in force: the last one written so far
                if isinstance(element, meter.TimeSignature):
                    bar = float(element.barDuration.quarterLength) or DEFAULT_BAR
            bars = float(measure.highestTime) / bar
            if bars > 1:
                overfull += bars - 1
                if bars > worst_bars:
                    worst, worst_bars = (getattr(measure, "number", 1), part_number), bars
    if overfull > MAX_OVERFULL_BARS:
        raise RejectedInput(
            f"The score holds {overfull:,.0f} bars more than it has measures: measure {worst[0]} of part {worst[1]} "
            f"alone holds {worst_bars:,.0f} bars of its meter. This server accepts at most {MAX_OVERFULL_BARS:,} "
            "such extra bars, as music21 would take minutes and memory without end to write the score out "
            "(export, render, transpose, harmonise); put bar lines in the music.",
            kind="oversize",
        )


def _check_size(size: int, max_bytes: int, what: str) -> None:
    if size > max_bytes:
        raise RejectedInput(
            f"The {what} is {size:,} bytes, over the limit of {max_bytes:,} bytes (MAX_SCORE_BYTES).",
            kind="oversize",
        )


def _parse_file(name: str, *, max_bytes: int, import_root: Path | None) -> ParsedSource:
    if import_root is None:
        raise UnsupportedFormat("File imports are disabled on this server (SCORE_IMPORT_ROOT is not set).")
    if "\x00" in name:
        raise RejectedInput("The file name contains a NUL byte.", kind="path_traversal")
    root = import_root.resolve()
    path = (root / name).resolve()  # an absolute `name` replaces root; both cases are checked below
    if not path.is_relative_to(root):
        raise RejectedInput(f"The file {name!r} is outside the import folder.", kind="path_traversal")
    if not path.is_file():
        raise InvalidArguments(f"No file {name!r} in the import folder.")
    source_format = FILE_EXTENSIONS.get(path.suffix.lower())
    if source_format is None:
        raise UnsupportedFormat(
            f"Unknown file type {path.suffix or '(none)'!r}; supported: {', '.join(sorted(FILE_EXTENSIONS))}."
        )
    _check_size(path.stat().st_size, max_bytes, "file")
    origin = str(path.relative_to(root))
    raw = path.read_bytes()
    if source_format in ("midi", "mxl"):
        if source_format == "mxl":
            _check_mxl(raw, max_bytes)
        return ParsedSource(parse_stored(source_format, data=raw), source_format, data=raw, origin=origin)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    _check_no_nul(text, f"the file {origin!r}")
    return ParsedSource(_parse(_IMPORT_PARSERS, source_format, text=text), source_format, text=text, origin=origin)


def _check_mxl(raw: bytes, max_bytes: int) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile as exc:
        raise ScoreParseError("The .mxl file is not a valid compressed MusicXML (zip) archive.") from exc
    if unpacked > max_bytes * MAX_MXL_EXPANSION:
        raise RejectedInput(f"The .mxl archive unpacks to {unpacked:,} bytes, too large.", kind="oversize")


def _parse_musicxml(text: str | bytes) -> stream.Score:
    """Build the score from the defused tree exactly as music21's own `converter.parse` does: into the importer's
    `stream`. A part on several staves (a piano's two, a voice-and-piano song's three) is split into PartStaffs that
    music21 inserts into `importer.stream`, not into the score passed to `xmlRootToScore`: given any other target,
    those staves are silently lost."""
    root = safe_xml_root(text)
    _check_meters("MusicXML", (beats.text or "" for beats in root.iter("beats")))
    _check_musicxml_times(root)
    if root.tag != "score-partwise":
        raise ScoreParseError(
            f"Only partwise MusicXML (<score-partwise>) can be read; this document's root is <{root.tag}>. "
            "Most notation programs export partwise MusicXML by default."
        )
    importer = MusicXMLImporter()
    importer.xmlRootToScore(root, inputM21=importer.stream)
    return importer.stream


def _check_musicxml_times(root: Element) -> None:
    """Refuse a negative duration (music21 reads it, and answers with negative lengths) and a repeat played
    MAX_REPEAT_TIMES or more times."""
    for duration in root.iter("duration"):  # a note's, a <backup>'s or a <forward>'s
        text = (duration.text or "").strip()
        if text.startswith("-"):
            raise ScoreParseError(f"The MusicXML has a negative <duration> ({text}); durations are never negative.")
    for repeat in root.iter("repeat"):
        times = (repeat.get("times") or "").strip()
        if times and (not times.isdigit() or int(times) >= MAX_REPEAT_TIMES):
            raise RejectedInput(
                f"The MusicXML has a repeat played {times[:12]} times; this server reads repeats of fewer than "
                f"{MAX_REPEAT_TIMES} times, as writing them out (MIDI export, rendering) would take without end.",
                kind="oversize",
            )


def _parse_mxl(data: bytes) -> stream.Score:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = [n for n in archive.namelist() if not n.startswith("META-INF/")]
        container = "META-INF/container.xml"
        if container in archive.namelist():
            rootfile = safe_xml_root(archive.read(container)).find(".//rootfile")
            if rootfile is not None and rootfile.get("full-path"):
                names = [rootfile.get("full-path", "")]
        xml_names = [n for n in names if n.lower().endswith((".xml", ".musicxml"))]
        if not xml_names:
            raise ScoreParseError("The .mxl archive holds no MusicXML document.")
        return _parse_musicxml(archive.read(xml_names[0]))


def _parse_tinynotation(text: str, *, strict: bool = False) -> stream.Score:
    """One part per non-empty line, top part first (e.g. "4/4 c'2 d'2" over "4/4 c2 g2"). `strict`: a word music21
    cannot read is an error; otherwise it is left out, as music21 does."""
    body = text.strip()
    if body.lower().startswith("tinynotation:"):
        body = body[len("tinynotation:") :]
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    if not lines:
        raise ScoreParseError("The tinyNotation source is empty.")
    longest = max((word for line in lines for word in line.split()), key=len)
    if len(longest) > MAX_TINYNOTATION_WORD:
        raise ScoreParseError(
            f"The tinyNotation source has a word of {len(longest):,} characters ({longest[:20]!r}...); notes are "
            f"separated by spaces and no word may be longer than {MAX_TINYNOTATION_WORD} characters."
        )
    score = stream.Score()
    for line in lines:
        # parseData, as for every text format (_PARSERS): converter.parse looks for a file named by the line first.
        score.insert(0, converter.parseData(line, format="tinyNotation", raiseExceptions=strict))
    return score


def _parse_corpus(path: str) -> stream.Score:
    if not CORPUS_PATH.match(path) or ".." in path:
        raise InvalidArguments(f"{path!r} is not a corpus path (for example 'bach/bwv66.6').")
    if not _in_corpus(path):
        raise InvalidArguments(f"No work {path!r} in the music21 corpus.")
    return parse_corpus_work(path)


# What reading a torn pickle raises: zlib on a cut-off stream, pickle on a cut-off or mixed one, music21 on the rest.
_TORN_PICKLE = (zlib.error, EOFError, pickle.UnpicklingError, freezeThaw.FreezeThawException)


def parse_corpus_work(path: str) -> stream.Score:
    """`corpus.parse(path)`, whole even when music21's pickle of the work is torn.

    music21 keeps a pickle of each corpus work it has parsed in its scratch directory and rewrites it in place, so a
    process can read it half written by another (two tool processes or test workers parsing the same work for the first
    time), or cut short for good by a process killed while writing it. The work's source is always whole: the torn
    pickle is removed (the next parse writes it again) and the work is read from its source.
    """
    try:
        return corpus.parse(path)
    except _TORN_PICKLE as exc:
        torn = converter.PickleFilter(corpus.getWork(path)).status()[2]
        logger.warning("music21's pickle of corpus work %s is torn (%s); reading the work from its source", path, exc)
        if torn is not None:
            torn.unlink(missing_ok=True)
        return corpus.parse(path, forceSource=True)


def _check_one_corpus_work(path: str) -> None:
    """At import, `path` must name one work of the corpus (a score stored before this check still parses)."""
    works = _corpus_works(path) if CORPUS_PATH.match(path) and ".." not in path else []
    if not works:
        return  # _parse_corpus says what is wrong with it
    wanted = path.lower()
    # music21 finds works by any part of their path ('bach' is all 433 of Bach's, 'bach/bwv66' is bwv66.6) and
    # parses the first it finds: the path must name one work, or the caller is told which ones it could mean.
    named = {
        stem for stem, file in works if wanted in (stem.lower(), file.lower()) or stem.lower().endswith("/" + wanted)
    }
    if len(named) != 1:
        candidates = sorted(named or {stem for stem, _ in works})
        shown = ", ".join(repr(work) for work in candidates[:5]) + (", ..." if len(candidates) > 5 else "")
        raise InvalidArguments(
            f"{path!r} is not the path of one work in the music21 corpus; it could mean {len(candidates)}: "
            f"{shown}; give one of them whole."
        )


def _corpus_works(path: str) -> list[tuple[str, str]]:
    """The corpus works music21 finds for `path`, each as its path in the corpus without and with its extension
    (none for a path it finds nothing for)."""
    try:
        found = corpus.getWork(path)
    except Exception:  # what _in_corpus takes for "not found"
        return []
    if not found:
        return []
    root = Path(common.getCorpusFilePath())
    relative = [Path(p).relative_to(root) for p in (found if isinstance(found, list) else [found])]
    return [(p.with_suffix("").as_posix(), p.as_posix()) for p in relative]


def _in_corpus(path: str) -> bool:
    try:
        return bool(corpus.getWork(path))
    except Exception:  # music21 raises CorpusException, or others on odd paths, for "not found"
        return False


def _parse_midi(data: bytes) -> stream.Score:
    """music21's own MIDI reading (`converter.parse(data, format="midi")` reads the file, then translates it),
    with the time signatures checked in between."""
    read = midi.MidiFile()
    read.readstr(data)
    ticks = max((sum(event.time for event in track.events if event.isDeltaTime()) for track in read.tracks), default=0)
    quarters = ticks / max(1, read.ticksPerQuarterNote or 1)
    if quarters > MAX_MIDI_QUARTERS:
        raise RejectedInput(
            f"The MIDI file lasts {quarters:,.0f} quarter notes, past the {MAX_MIDI_QUARTERS:,} this server reads "
            "(hours of music): music21 would take memory without end to lay it out in bars.",
            kind="oversize",
        )
    _check_meters(
        "MIDI",
        (
            str(event.data[0])
            for track in read.tracks
            for event in track.events
            if event.type == MetaEvents.TIME_SIGNATURE and event.data
        ),
    )
    return midiFileToStream(read, encoding="utf-8")


def _parse_abc(text: str) -> stream.Stream:
    """music21's own ABC reading (`converter.parseData(text, format="abc")`, step by step), with the unit note length
    ABC 2.1 gives a tune whose header sets neither L: nor M: (sections 3.1.6 and 3.1.7: no meter is free meter, whose
    unit is 1/8). music21 derives the unit from M: itself, but without either field it refused every note ("no
    active default note length"). Text with no tune header at all (no X: or K:) is left to music21: it is no tune."""
    handler = abcFormat.ABCHandler()
    handler.parseHeaderForVersionInformation(text[:100])
    handler.tokenize(text)
    if _unit_length_unset(handler.tokens):
        handler.tokens.insert(0, abcFormat.ABCMetadata("L:1/8"))
    handler.tokenProcess()
    if handler.definesReferenceNumbers():
        return abcFormat.translate.abcToStreamOpus(handler)
    return abcFormat.translate.abcToStreamScore(handler)


def _unit_length_unset(tokens: list[Any]) -> bool:
    """Whether the first note of these ABC tokens follows a tune header (X: or K:) but no L: or M: field."""
    header = False
    for token in tokens:
        if isinstance(token, abcFormat.ABCMetadata):
            token.preParse()  # reads its tag; music21's tokenProcess reads it again, to the same effect
            if token.isDefaultNoteLength() or token.isMeter():
                return False
            header = header or token.isReferenceNumber() or token.isKey()
        elif isinstance(token, abcFormat.ABCNote):  # a chord is one too
            return header
    return False


_PARSERS = {
    "corpus": _parse_corpus,
    "tinynotation": _parse_tinynotation,
    # Every text is read as the music itself (parseData, or music21's ABC handler), never with converter.parse:
    # that reads a string naming an existing file (a leading ~ or $VAR expanded) and fetches an http(s) URL, so that
    # a caller's "/etc/..." would import the server's own files.
    "abc": _parse_abc,
    "musicxml": _parse_musicxml,
    "mxl": _parse_mxl,
    "midi": _parse_midi,
    "humdrum": lambda text: converter.parseData(text, format="humdrum"),
}
# A new source's tinyNotation is read strictly: music21 leaves out every word it cannot read ("4/4 c4 zz d" was
# imported as two notes, "C,4" or "c1000" not at all). Scores stored before are still read as they were.
_IMPORT_PARSERS = {**_PARSERS, "tinynotation": functools.partial(_parse_tinynotation, strict=True)}


def _as_score(parsed: object, source_format: str) -> stream.Score:
    if isinstance(parsed, stream.Opus):
        scores = list(parsed.scores)
        if len(scores) != 1:
            raise ScoreParseError(f"The {source_format} source holds {len(scores)} pieces; import them one at a time.")
        parsed = scores[0]
    if isinstance(parsed, stream.Part):
        score = stream.Score()
        score.insert(0, parsed)
        parsed = score
    if not isinstance(parsed, stream.Score):
        raise ScoreParseError(f"The {source_format} source did not produce a score.")
    if not parsed.recurse().notes.first():
        raise ScoreParseError(f"The {source_format} source contains no notes.")
    return parsed


def _describe(exc: Exception, source_format: str) -> str:
    """A parser's complaint in the caller's words: its first line, without the sentences that show music21's own
    objects (the ABC parser appends "tPrev: None, token: <music21.abcFormat.ABCNote 'a'>, ..." to its reason).
    The faults music21 reports only as Python's own errors are told as what they are in the music."""
    if isinstance(exc, ZeroDivisionError):  # "float division by zero"
        return "a time signature or a note length has 0 below the line (such as 4/0, or L:1/0 in ABC)"
    if source_format == "midi" and isinstance(exc, IndexError):  # "index out of range"
        return "the MIDI data ends in the middle of its header or of a track (the file is cut short)"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    sentences = re.split(r"(?<=\.)\s+", text)
    kept = [sentence for sentence in sentences if "<music21." not in sentence]
    return (" ".join(kept) if kept else type(exc).__name__)[:300]
