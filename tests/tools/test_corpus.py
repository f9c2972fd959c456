"""analyze_corpus: a corpus-sized job in chunks, in process (no broker) or on a real Celery worker (REDIS_URL)."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from music21 import corpus

from apps.core.errors import InvalidArguments
from apps.tools.corpus_jobs import CHUNK_SIZE, Cancelled
from apps.tools.invocation import Caller, invoke_tool
from apps.tools.tasks import CHUNK_SOFT_TIME_LIMIT, CHUNK_TIME_LIMIT, analyze_corpus_chunk


def test_every_work_gets_the_key_music21_finds(celery_worker: None, alice: Any, call: Any) -> None:
    progress: list[tuple[int, int]] = []
    caller = Caller(user=alice, scopes=frozenset({"music21:read"}), progress=lambda d, t, m: progress.append((d, t)))
    result = invoke_tool("analyze_corpus", {"path_pattern": "bach/bwv6*", "analysis": "key"}, caller=caller)

    works = result["results"]
    assert len(works) > CHUNK_SIZE  # several chunks
    assert [w["path"] for w in works] == sorted(w["path"] for w in works)
    for work in works[:: max(1, len(works) // 5)]:
        expected = corpus.parse(work["path"]).analyze("key")
        assert work["key"] == f"{expected.tonic.name} {expected.mode}", work["path"]
    assert result["summary"]["works"] == len(works)
    assert sum(result["summary"]["modes"].values()) == len(works) - result["summary"]["failed"]
    # Progress starts at 0, never goes back, and ends with every work done.
    assert progress[0][0] == 0 and progress[-1] == (len(works), len(works))
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)


def test_atonal_works_are_counted_as_having_no_clear_key(celery_worker: None, alice: Any, call: Any) -> None:
    result = call(alice, "analyze_corpus", path_pattern="schoenberg/opus19/movement2", analysis="key")
    assert [work["key"] for work in result["results"]] == [None]
    assert result["summary"]["modes"] == {"no clear key": 1}


def test_a_cancelled_job_stops(celery_worker: None, alice: Any) -> None:
    caller = Caller(user=alice, scopes=frozenset({"music21:read"}))
    caller.cancelled.set()
    with pytest.raises(Cancelled, match="Cancelled"):
        invoke_tool("analyze_corpus", {"composer": "bach", "limit": 40}, caller=caller)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"composer": "nobody"}, "no works by 'nobody'"),
        ({"composer": "bach; rm"}, "not a composer name"),
        ({"path_pattern": "  "}, "not a corpus path pattern"),
        ({"path_pattern": "zzz/*"}, "No corpus work matches"),
    ],
)
def test_bad_queries_are_named(alice: Any, call: Any, arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArguments, match=message):
        call(alice, "analyze_corpus", **arguments)


def test_composer_and_pattern_are_exclusive(alice: Any, call: Any) -> None:
    with pytest.raises(InvalidArguments, match="exactly one of composer or path_pattern"):
        call(alice, "analyze_corpus", composer="bach", path_pattern="bach/*")


def test_a_chunk_outlives_its_worker_and_is_never_rerun_while_it_runs() -> None:
    """What tests/tools/test_corpus_crash.py shows with a short visibility timeout, held for the real one: a chunk
    is acknowledged after it ran (handed back if its process dies), a live worker ends any chunk (the hard limit)
    before the broker would deliver it again, and only JSON crosses the broker."""
    assert analyze_corpus_chunk.acks_late and analyze_corpus_chunk.reject_on_worker_lost
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert CHUNK_SOFT_TIME_LIMIT < CHUNK_TIME_LIMIT < visibility <= 300  # back within minutes, not the default hour
    assert settings.CELERY_ACCEPT_CONTENT == ["json"]
    assert settings.CELERY_TASK_SERIALIZER == settings.CELERY_RESULT_SERIALIZER == "json"
    assert settings.CELERY_TASK_SOFT_TIME_LIMIT < settings.CELERY_TASK_TIME_LIMIT
