"""Storing, fetching and deleting scores. The only module that writes the Score table."""

from __future__ import annotations

import functools
import hashlib
import re
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, transaction
from music21 import stream

from apps.core.errors import AlreadyExists, InvalidArguments
from apps.core.metrics import FILES_PROCESSED
from apps.core.runtime import after_answer
from apps.tools.gate import changing
from apps.tools.models import SCORE_ID_PATTERN, Score
from apps.tools.selectors import score_get, score_missing
from apps.tools.services.cache import CacheKey, parsed_scores
from apps.tools.services.parsing import ParsedSource, parse_source, parse_stored
from apps.tools.services.render import musicxml_text
from apps.tools.services.summary import score_summary
from apps.tools.services.voiceleading import part_lines

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

_SCORE_ID = re.compile(SCORE_ID_PATTERN)


def score_import(*, owner: AbstractBaseUser, score_id: str, source: str, source_type: str) -> Score:
    """Parse a source and store it as the owner's score `score_id`. An existing id is never overwritten."""
    _check_score_id(score_id)
    if Score.objects.filter(owner=owner, score_id=score_id).exists():
        raise AlreadyExists(f"You already have a score with id {score_id!r}; delete it first or choose another id.")
    parsed = parse_source(
        source_type, source, max_bytes=settings.MAX_SCORE_BYTES, import_root=settings.SCORE_IMPORT_ROOT
    )
    stored = _store(owner=owner, score_id=score_id, parsed=parsed)
    FILES_PROCESSED.inc()
    return stored


def score_store_generated(
    *,
    owner: AbstractBaseUser,
    parent: Score | None,
    music: stream.Score,
    derivation: str,
    score_id: str | None = None,
    base: str | None = None,
) -> Score:
    """Store a score that a tool generated (from `parent`, when there is one) as MusicXML, under `score_id` or a
    fresh id made from `base` (by default the parent's id) and the derivation."""
    if score_id is None:
        stem = re.sub(r"[^A-Za-z0-9._\-]", "-", base or (parent.score_id if parent else "score")).strip("-._")
        score_id = _free_score_id(owner=owner, base=f"{stem or 'score'}-{derivation}")
    else:
        _check_score_id(score_id)
        if Score.objects.filter(owner=owner, score_id=score_id).exists():
            raise AlreadyExists(f"You already have a score with id {score_id!r}; choose another new_score_id.")
    text = musicxml_text(music)  # UnprocessableScore when music21 cannot write it
    parsed = ParsedSource(music, "musicxml", text=text)
    return _store(owner=owner, score_id=score_id, parsed=parsed, parent=parent, derivation=derivation)


def score_stream(*, score: Score) -> stream.Score:
    """The parsed music of a stored score, from this process's cache when possible. Read-only for the caller."""
    key = _held_as(score)
    cached = parsed_scores.get(key)
    if cached is not None:
        return cached
    if score.get_deferred_fields() & set(Score.SOURCE_FIELDS):  # the selectors leave them behind: read on a miss
        try:
            score.refresh_from_db(fields=Score.SOURCE_FIELDS)
        except Score.DoesNotExist:  # deleted since its row was read
            raise score_missing(score.score_id) from None
    data = bytes(score.source_bytes) if score.source_bytes is not None else None
    music = parse_stored(score.source_format, text=score.source_text, data=data)
    parsed_scores.put(key, music)
    return music


def score_stream_held(*, score: Score) -> stream.Score | None:
    """The parsed music of a stored score if this process holds it now, else None (nothing is parsed). Not counted
    as a hit or a miss of the parsed-score memory: asking whether it is held is not parsing it or sparing a parse."""
    return parsed_scores.get(_held_as(score), counted=False)


def _held_as(score: Score) -> CacheKey:
    """The key of a stored score's parsed music in the parsed-score memory: its row and its content, so that an
    edited source is never answered with its old music."""
    return (score.pk, score.content_sha256)


def score_delete(*, owner: AbstractBaseUser, score_id: str) -> None:
    score = score_get(owner=owner, score_id=score_id)
    pk = score.pk
    with changing():
        score.delete()
    parsed_scores.discard_score(pk)


def _store(
    *, owner: AbstractBaseUser, score_id: str, parsed: ParsedSource, parent: Score | None = None, derivation: str = ""
) -> Score:
    summary = score_summary(parsed.score)
    metadata = parsed.score.metadata
    title = (metadata.title or metadata.movementName or "") if metadata else ""
    composer = (metadata.composer or "") if metadata else ""
    if not title and parsed.origin:
        title = parsed.origin
    # A MIDI file's track names may hold NUL characters, which the database stores in no text.
    title, composer = title.replace("\x00", ""), composer.replace("\x00", "")
    score = Score(
        owner=owner,
        score_id=score_id,
        title=title[:300],
        composer=composer[:300],
        source_format=parsed.format,
        source_origin=parsed.origin[:500],
        source_text=parsed.text,
        source_bytes=parsed.data,
        content_sha256=hashlib.sha256(parsed.data if parsed.data is not None else parsed.text.encode()).hexdigest(),
        derived_from=parent,
        derivation=derivation,
        parts_count=summary["parts_count"],
        measures_count=summary["measures"],
        notes_count=summary["notes"],
        lowest_pitch=summary["lowest_pitch"],
        highest_pitch=summary["highest_pitch"],
        key_signatures=summary["key_signatures"],
        time_signatures=summary["time_signatures"],
        duration_quarters=summary["duration_quarters"],
    )
    try:
        with changing(), transaction.atomic():
            score.save()
    except IntegrityError:
        # Another request stored the same id between our check and this insert.
        raise AlreadyExists(f"You already have a score with id {score_id!r}.") from None
    parsed_scores.put(_held_as(score), parsed.score)
    # The first analysis of a new score would otherwise work out each part's line (voice leading and patterns
    # read them, apps.tools.services.derived): done once the store is answered, while the caller reads the answer.
    after_answer(functools.partial(_lines_ahead, score))
    return score


def _lines_ahead(score: Score) -> None:
    """Each part's line of a score just stored, kept with its parsed music if this process still holds it."""
    music = score_stream_held(score=score)
    if music is not None:
        part_lines(music)


def _check_score_id(score_id: str) -> None:
    if not isinstance(score_id, str) or not _SCORE_ID.match(score_id):
        raise InvalidArguments(
            f"Invalid score_id {score_id!r}: use 1 to 128 letters, digits, dots, dashes or underscores, "
            "starting with a letter or digit."
        )


def _free_score_id(*, owner: AbstractBaseUser, base: str) -> str:
    base = base[:120]
    taken = set(Score.objects.filter(owner=owner, score_id__startswith=base).values_list("score_id", flat=True))
    if base not in taken:
        return base
    number = 2
    while f"{base}-{number}" in taken:
        number += 1
    return f"{base}-{number}"
