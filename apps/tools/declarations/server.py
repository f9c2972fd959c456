"""Notation, and the server's own health."""

from __future__ import annotations

import os
import platform
from typing import Any

import music21
import verovio
from django.core.cache import cache
from django.db import connection
from pydantic import Field

from apps.security.scopes import READ
from apps.tools.declarations.common import ScoreId, score_and_music
from apps.tools.invocation import Caller
from apps.tools.registry import ToolArguments, tool
from apps.tools.services.cache import parsed_scores
from apps.tools.services.render import render_svg


class RenderArgs(ToolArguments):
    score_id: ScoreId
    measure_start: int | None = Field(None, ge=0, description="First measure to draw (0 is a pickup).")
    measure_end: int | None = Field(None, ge=0, description="Last measure to draw.")
    page: int = Field(1, ge=1, description="Page of the engraving, when it needs more than one.")


@tool("render_score", arguments=RenderArgs, scope=READ, group="export")
def render_score(caller: Caller, args: RenderArgs) -> dict[str, Any]:
    """Engrave the score, or a range of its measures, as SVG notation.

    Returns:
    - svg: the page as SVG text; media_type: "image/svg+xml".
    - page: the page rendered (from 1); page_count: pages in the selection."""
    score, music = score_and_music(caller, args.score_id)
    rendered = render_svg(music, measure_start=args.measure_start, measure_end=args.measure_end, page=args.page)
    return {"score_id": score.score_id, "media_type": "image/svg+xml", **rendered}


class NoArgs(ToolArguments):
    pass


@tool("health_check", arguments=NoArgs, scope=None, group="system")
def health_check(caller: Caller, args: NoArgs) -> dict[str, Any]:
    """Report whether the server and its database and cache are working, and its software versions.

    Returns:
    - healthy: true when every check is ok; checks: database and cache, each `ok` or `error: <kind>`.
    - versions: of music21, verovio and Python; parsed_scores_cached: scores this process keeps parsed; process:
      the id of the process that answered."""
    checks = {"database": _probe(lambda: connection.cursor().execute("SELECT 1")), "cache": _probe(_cache_probe)}
    return {
        "healthy": all(c == "ok" for c in checks.values()),
        "checks": checks,
        "versions": {
            "music21": music21.__version__,
            "verovio": verovio.toolkit().getVersion(),
            "python": platform.python_version(),
        },
        "parsed_scores_cached": len(parsed_scores),
        "process": os.getpid(),  # which worker answered, for operators chasing one process's trouble
    }


def _cache_probe() -> None:
    cache.set("health-probe", "ok", 10)
    if cache.get("health-probe") != "ok":
        raise RuntimeError("cache did not return what was stored")


def _probe(check: Any) -> str:
    try:
        check()
    except Exception as exc:  # a health check reports failures instead of raising them
        return f"error: {type(exc).__name__}"
    return "ok"
