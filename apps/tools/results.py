"""Answers of the analysis tools, remembered in the database so that a question asked again about the same music,
by any process or replica, is answered without the music21 work.

A remembered answer is keyed by what decides it: the score's content hash, the tool, its arguments and the version
of the analysis code (music21's version and the source of apps/tools/services, read once per process). A new
deploy that changes an answer therefore never serves the old one, and an edited score never its old answers: the
key moves on, and the stale rows age out under the bound. That is the whole freshness story.

Whose answers: an answer belongs to the score it was computed on (it goes with the score, and with its owner's
erasure) and is read back only for that score, except answers on a public corpus work, which are `shared` with
every caller who imported the same work (nothing personal is in them).

The table holds about `ANALYSIS_RESULTS_KEPT` rows (0 turns remembering off): every so many new rows, the least
recently used beyond the bound are deleted. Reads refresh a row's `used_at` at most once a minute.

A question is read and looked for on the call's own thread (apps.tools.invocation.Remembered): one asked before is
answered there, without a tool thread or process; only a new one goes to a tool thread or process to be worked out,
with the score row the call read (`Question`), so that the row is read once per call.

A process that holds the score parsed also keeps the answers given on it beside the parsed score
(apps.tools.services.derived: at most ANSWERS_BESIDE_SCORE per score, of at most LARGEST_BESIDE characters each, as
JSON text), so a question asked again there is answered without the database read. They leave with the parsed
score, under the same key (its content hash), so they are never stale either; the code version cannot change
within a process.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import music21
from django.conf import settings
from django.utils import timezone
from music21 import stream

from apps.core.cache import Memory
from apps.core.db import select_by_equality
from apps.core.runtime import after_answer
from apps.tools.models import AnalysisResult, Score, SourceFormat
from apps.tools.selectors import score_get
from apps.tools.services.derived import derived
from apps.tools.services.scores import score_stream, score_stream_held

# Answers larger than this are computed each time: a row per question of that size would crowd the table.
LARGEST_KEPT = 1_000_000  # characters of JSON
PRUNE_EVERY = 100  # new rows written by this process between two prunings
# Answers kept in memory beside each parsed score, least recently asked forgotten first: a score's usual questions
# (each tool with its default arguments, a few variants) without letting one client's sweep of arguments pile up;
# and only answers of at most this many characters of JSON (pattern_recognition's on a chorale is about 35,000), so
# that what is kept beside a score stays under a megabyte, less than the parsed score itself holds. A larger answer
# costs far more to work out or to send than its database read.
ANSWERS_BESIDE_SCORE = 16
LARGEST_BESIDE = 64_000
_REFRESH_AFTER = timedelta(minutes=1)
_written = 0


@functools.cache
def code_version() -> str:
    """What the analysis code is: music21's version and the platform's music services, hashed."""
    digest = hashlib.sha256(music21.__version__.encode())
    for source in sorted((Path(__file__).parent / "services").glob("*.py")):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def _arguments_digest(arguments: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(arguments, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class Question:
    """A question to a remembered analysis tool about one stored score: the score's row, read once for the call, the
    tool and its arguments but the score id. Asked on the call's own thread (`remembered`), and sent with the call to
    the tool thread or process (`worked_out`) only when it is new there."""

    score: Score
    tool: str
    arguments: dict[str, Any]

    def remembered(self) -> dict[str, Any] | None:
        """The tool's result as given before on the same content: from beside the parsed score when this process
        holds it, else from the database (on this score, or on any caller's copy of a corpus work); None when the
        question is new, or when remembering is off."""
        if settings.ANALYSIS_RESULTS_KEPT <= 0:
            return None
        beside = _beside(self.score)
        text = beside.get(self.asked) if beside is not None else None
        if text is None:
            now = timezone.now()
            for row in _remembered_row(self.key, score=None if _shared(self.score) else self.score):
                if row.used_at < now - _REFRESH_AFTER:
                    AnalysisResult.objects.filter(pk=row.pk).update(used_at=now)
                if beside is not None:
                    _put_beside(beside, self.asked, row.result)
                text = row.result
                break
        # Parsed from its JSON for each caller, a fresh copy.
        return None if text is None else self._result(json.loads(text))

    def worked_out(self, analyse: Callable[[stream.Score], dict[str, Any]]) -> dict[str, Any]:
        """The tool's result from `analyse` on the score's parsed music, remembered once the call has been answered
        (apps.core.runtime.after_answer: the caller waits neither for the row nor for the answer's JSON). Errors
        are never remembered: `analyse` raising raises here. The analysis services answer in JSON's own types
        (lists, string keys: pinned by tests/tools/test_results.py), so the answer read back later is this one."""
        answer = analyse(score_stream(score=self.score))
        if settings.ANALYSIS_RESULTS_KEPT > 0:
            after_answer(functools.partial(_keep, answer, question=self, used_at=timezone.now()))
        return self._result(answer)

    @functools.cached_property
    def key(self) -> dict[str, str]:
        """What decides the answer: the row's key in the database."""
        return {
            "content_sha256": self.score.content_sha256,
            "tool": self.tool,
            "arguments_sha256": _arguments_digest(self.arguments),
            "code_version": code_version(),
        }

    @property
    def asked(self) -> tuple[str, str]:
        """The question's key beside the parsed score (the content is the parsed score's own)."""
        return (self.tool, self.key["arguments_sha256"])

    def _result(self, answer: dict[str, Any]) -> dict[str, Any]:
        return {"score_id": self.score.score_id, **answer}


def question_read(*, owner: Any, tool: str, arguments: Any) -> Question:
    """`owner`'s question `arguments` (the tool's validated arguments, with their score id) to `tool`. Another
    user's score is reported exactly as a missing one (score_get)."""
    score = score_get(owner=owner, score_id=arguments.score_id)
    return Question(score, tool, arguments.model_dump(mode="json", exclude={"score_id"}))


def _shared(score: Score) -> bool:
    """Whether answers on `score` are everyone's: a public corpus work's (nothing personal is in them)."""
    return score.source_format == SourceFormat.CORPUS


def _remembered_row(key: dict[str, str], *, score: Score | None) -> Any:
    """The remembered answer to the question `key`: on `score`, or shared (a corpus work's) when `score` is None.

    Read on every analysis call that this process has no answer beside the parsed score for, so, like the score
    row (apps.tools.selectors.score_get), with one query written once rather than compiled by the ORM on each call
    (about two thirds of the read's CPU); Django's raw queryset still converts the fields."""
    whose, value = ("shared", True) if score is None else ("score", score.pk)
    return AnalysisResult.objects.raw(_REMEMBERED_ROW[whose], [*(key[name] for name in _KEY_FIELDS), value])


_KEY_FIELDS = ("content_sha256", "tool", "arguments_sha256", "code_version")
_REMEMBERED_ROW = {
    whose: select_by_equality(AnalysisResult, fields=("id", "result", "used_at"), where=(*_KEY_FIELDS, whose))
    + " LIMIT 1"
    for whose in ("shared", "score")
}


def _keep(answer: dict[str, Any], *, question: Question, used_at: Any) -> None:
    """Store a new answer (unless another call stored the same one meanwhile, or it is too large to keep), pruning
    now and then."""
    global _written
    try:
        text = json.dumps(answer)
    except (TypeError, ValueError):
        return  # not JSON (a tool's own business): answered, not kept
    if len(text) > LARGEST_KEPT:
        return
    score = question.score
    beside = _beside(score)  # held since the analysis, unless dropped meanwhile
    if beside is not None:
        _put_beside(beside, question.asked, text)
    AnalysisResult.objects.bulk_create(
        [AnalysisResult(score=score, shared=_shared(score), result=text, used_at=used_at, **question.key)],
        ignore_conflicts=True,
    )
    _written += 1
    if _written % PRUNE_EVERY == 0:
        results_prune()


def _beside(score: Score) -> Memory | None:
    """The answers kept beside `score`'s parsed music, if this process holds it."""
    music = score_stream_held(score=score)
    return None if music is None else derived(music, "answers", lambda: Memory(ANSWERS_BESIDE_SCORE))


def _put_beside(beside: Memory, question: tuple[str, str], text: str) -> None:
    if len(text) <= LARGEST_BESIDE:
        beside.put(question, text)


def results_prune() -> int:
    """Delete the least recently used answers beyond ANALYSIS_RESULTS_KEPT; how many went."""
    kept = settings.ANALYSIS_RESULTS_KEPT
    newest = AnalysisResult.objects.order_by("-used_at", "-pk").values_list("used_at", "pk")
    boundary = newest[kept : kept + 1].first() if kept > 0 else None
    if kept > 0 and boundary is None:
        return 0
    beyond = AnalysisResult.objects.all()
    if boundary is not None:
        used_at, pk = boundary
        beyond = beyond.filter(used_at__lt=used_at) | beyond.filter(used_at=used_at, pk__lte=pk)
    deleted, _ = beyond.delete()
    return deleted


def results_stats() -> dict[str, int]:
    """For /server_stats: how many answers are kept, and the bound."""
    return {"entries": AnalysisResult.objects.count(), "capacity": settings.ANALYSIS_RESULTS_KEPT}
