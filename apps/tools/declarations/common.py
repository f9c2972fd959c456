"""What the tool declarations share: argument types for score ids, and reaching the caller's stored scores."""

from __future__ import annotations

from typing import Annotated, Any

from music21 import stream
from pydantic import Field

from apps.tools.invocation import Caller
from apps.tools.models import SCORE_ID_PATTERN, Score
from apps.tools.registry import ToolArguments
from apps.tools.selectors import score_get
from apps.tools.services.scores import score_stream

ScoreId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=SCORE_ID_PATTERN,
        description="Your id for the score (letters, digits, '.', '-', '_').",
    ),
]
NewScoreId = Annotated[
    str | None,
    Field(
        default=None,
        max_length=128,
        pattern=SCORE_ID_PATTERN,
        description="Id for the generated score; by default one is derived from the source score's id.",
    ),
]


class ScoreArgs(ToolArguments):
    score_id: ScoreId


def score_and_music(caller: Caller, score_id: str) -> tuple[Score, stream.Score]:
    score = score_get(owner=caller.user, score_id=score_id)
    return score, score_stream(score=score)


def stored_score_reply(score: Score, info: dict[str, Any]) -> dict[str, Any]:
    return {
        "new_score_id": score.score_id,
        "title": score.title,
        "parts": score.parts_count,
        "measures": score.measures_count,
        "notes": score.notes_count,
        **info,
    }
