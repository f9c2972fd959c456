"""Analysis answers remembered across calls (apps.tools.results): a question asked again is answered without the
music21 work, only for the score it was asked about (corpus works excepted), and never after the music changed."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from django.db import DatabaseError

from apps.tools import results, selectors
from apps.tools.invocation import Caller, invoke_tool
from apps.tools.models import AnalysisResult, Score
from apps.tools.monitoring import server_stats
from apps.tools.results import ANSWERS_BESIDE_SCORE, results_prune
from apps.tools.services import keys, voiceleading

SCALE = "4/4 c4 d e f g a b c'"


@pytest.fixture
def key_work(monkeypatch: Any) -> list[str]:
    """Each time the key analysis really runs, a mark."""
    done: list[str] = []
    real = keys.key_analysis

    def counted(music: Any, **options: Any) -> dict[str, Any]:
        done.append("run")
        return real(music, **options)

    monkeypatch.setattr(keys, "key_analysis", counted)
    return done


def test_a_question_asked_again_is_answered_the_same_without_the_music21_work(
    alice: Any, chorale: Any, call: Any, key_work: list[str]
) -> None:
    first = call(alice, "key_analysis", score_id="chorale")
    again = call(alice, "key_analysis", score_id="chorale")
    assert first == again and first["key"] == "F# minor"
    assert key_work == ["run"]
    other = call(alice, "key_analysis", score_id="chorale", algorithm="aarden")  # other arguments: a new question
    assert other["algorithm"] == "aarden" and key_work == ["run", "run"]


def test_a_new_question_reads_the_score_row_once(alice: Any, chorale: Any, call: Any, monkeypatch: Any) -> None:
    """The call's own thread reads the row to look for a remembered answer; the tool thread that works the answer
    out uses that row (with tool processes, it is sent along) rather than reading it again."""
    reads: list[Any] = []
    real = Score.objects.raw

    def counted(query: str, params: Any = (), *args: Any, **kwargs: Any) -> Any:
        if query == selectors._SCORE_ROW:
            reads.append(params[1])
        return real(query, params, *args, **kwargs)

    monkeypatch.setattr(Score.objects, "raw", counted)
    call(alice, "pattern_recognition", score_id="chorale")  # new: worked out in a tool thread
    call(alice, "pattern_recognition", score_id="chorale")  # asked before
    assert reads == ["chorale", "chorale"]


@pytest.mark.parametrize(
    "tool", ["key_analysis", "chord_analysis", "harmony_analysis", "voice_leading_analysis", "pattern_recognition"]
)
def test_each_analysis_answers_the_same_value_remembered_as_computed(alice: Any, chorale: Any, tool: str) -> None:
    # The first answer leaves as computed and is kept as JSON; read back, it must be the very same value (lists, not
    # tuples; string keys), or a client would see an answer change shape between its first call and the next.
    caller = Caller.operator(alice)
    computed = invoke_tool(tool, {"score_id": "chorale"}, caller=caller)
    assert AnalysisResult.objects.filter(tool=tool).count() == 1
    remembered = invoke_tool(tool, {"score_id": "chorale"}, caller=caller)
    assert remembered == computed
    assert repr(remembered) == repr(computed)  # the same types all the way down (1 == 1.0, a tuple is no list)


@pytest.fixture
def answer_reads(monkeypatch: Any) -> list[str]:
    """Each read of a remembered answer from the database, a mark."""
    reads: list[str] = []
    real = AnalysisResult.objects.raw

    def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append("read")
        return real(*args, **kwargs)

    monkeypatch.setattr(AnalysisResult.objects, "raw", counted)
    return reads


def test_a_question_asked_again_where_the_score_is_parsed_is_answered_without_the_database(
    alice: Any, chorale: Any, call: Any, answer_reads: list[str]
) -> None:
    first = call(alice, "voice_leading_analysis", score_id="chorale")
    assert answer_reads == ["read"]  # a new question: looked for, then computed
    parsed = server_stats()["parsed_score_cache"]
    again = call(alice, "voice_leading_analysis", score_id="chorale")
    assert again == first and again["summary"]["voice_crossings"] == 1
    assert answer_reads == ["read"]  # answered from beside the parsed score
    # Looking beside the score is no parse and spares none: the parsed-score memory's counts do not move.
    assert server_stats()["parsed_score_cache"] == parsed
    # Each caller gets a copy of its own: what one does with its answer never changes the next one's.
    again["voice_crossings"].clear()
    assert call(alice, "voice_leading_analysis", score_id="chorale") == first


def test_answers_beside_a_score_are_bounded_least_recently_asked_first(
    alice: Any, chorale: Any, call: Any, answer_reads: list[str]
) -> None:
    limits = range(1, ANSWERS_BESIDE_SCORE + 2)  # one more question than are kept beside a score
    for limit in limits:
        assert len(call(alice, "chord_analysis", score_id="chorale", limit=limit)["chords"]) == limit
    answer_reads.clear()
    call(alice, "chord_analysis", score_id="chorale", limit=limits[-1])  # asked last: still beside the score
    assert answer_reads == []
    assert len(call(alice, "chord_analysis", score_id="chorale", limit=1)["chords"]) == 1  # forgotten there
    assert answer_reads == ["read"]  # so read back from the database (where it is kept as before)


def test_a_large_answer_is_kept_in_the_database_only(
    alice: Any, chorale: Any, call: Any, answer_reads: list[str], monkeypatch: Any
) -> None:
    monkeypatch.setattr(results, "LARGEST_BESIDE", 100)  # voice leading's answer on the chorale is over 500
    first = call(alice, "voice_leading_analysis", score_id="chorale")
    assert call(alice, "voice_leading_analysis", score_id="chorale") == first
    assert answer_reads == ["read", "read"]  # the second read back from the database, not from beside the score


def test_the_answer_is_not_kept_waiting_for_it_to_be_remembered(alice: Any, chorale: Any) -> None:
    # A transport that answers early (as /mcp does) has the answer before the row is written; the row is there
    # once the call has ended.
    rows_when_answered: list[int] = []

    def answer(outcome: Any) -> None:
        assert outcome["key"] == "F# minor"
        rows_when_answered.append(AnalysisResult.objects.count())

    caller = dataclasses.replace(Caller.operator(alice), answer=answer)
    invoke_tool("key_analysis", {"score_id": "chorale"}, caller=caller)
    assert rows_when_answered == [0]
    assert AnalysisResult.objects.filter(tool="key_analysis").count() == 1


def test_a_failure_to_remember_an_answer_does_not_fail_the_call(
    alice: Any, chorale: Any, call: Any, monkeypatch: Any, caplog: Any
) -> None:
    def refused(*args: Any, **kwargs: Any) -> None:
        raise DatabaseError("the table refused the row")

    monkeypatch.setattr(AnalysisResult.objects, "bulk_create", refused)
    assert call(alice, "key_analysis", score_id="chorale")["key"] == "F# minor"
    assert AnalysisResult.objects.count() == 0
    assert "work left for after a call's answer failed" in caplog.text


def test_another_persons_upload_is_never_answered_from_yours(
    alice: Any, bob: Any, call: Any, key_work: list[str]
) -> None:
    call(alice, "import_score", score_id="scale", source=SCALE, source_type="tinynotation")
    call(bob, "import_score", score_id="same-notes", source=SCALE, source_type="tinynotation")
    call(alice, "key_analysis", score_id="scale")
    call(bob, "key_analysis", score_id="same-notes")
    assert key_work == ["run", "run"]
    assert AnalysisResult.objects.filter(shared=True).count() == 0


def test_a_corpus_work_is_answered_once_for_everyone(
    alice: Any, bob: Any, chorale: Any, call: Any, key_work: list[str]
) -> None:
    call(alice, "key_analysis", score_id="chorale")
    call(bob, "import_score", score_id="bwv66", source="bach/bwv66.6", source_type="corpus")
    answer = call(bob, "key_analysis", score_id="bwv66")
    assert answer["score_id"] == "bwv66" and answer["key"] == "F# minor"
    assert key_work == ["run"]


def test_an_answer_read_back_from_the_database_marks_it_used_at_most_once_a_minute(
    alice: Any, chorale: Any, call: Any, monkeypatch: Any
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    monkeypatch.setattr(results, "LARGEST_BESIDE", 100)  # read back from the database, not from beside the score
    first = call(alice, "voice_leading_analysis", score_id="chorale")
    row = AnalysisResult.objects.get(tool="voice_leading_analysis")
    recently = timezone.now() - timedelta(seconds=20)
    AnalysisResult.objects.filter(pk=row.pk).update(used_at=recently)
    assert call(alice, "voice_leading_analysis", score_id="chorale") == first
    assert AnalysisResult.objects.get(pk=row.pk).used_at == recently  # used within the minute: not written again
    long_ago = timezone.now() - timedelta(minutes=5)
    AnalysisResult.objects.filter(pk=row.pk).update(used_at=long_ago)
    assert call(alice, "voice_leading_analysis", score_id="chorale") == first
    assert AnalysisResult.objects.get(pk=row.pk).used_at > timezone.now() - timedelta(seconds=30)


def test_a_changed_score_is_analysed_again(alice: Any, call: Any) -> None:
    call(alice, "import_score", score_id="tune", source="4/4 c4 e g c' g e c2", source_type="tinynotation")
    assert call(alice, "key_analysis", score_id="tune")["key"] == "C major"
    call(alice, "delete_score", score_id="tune")
    assert AnalysisResult.objects.count() == 0  # the answers went with the score
    call(alice, "import_score", score_id="tune", source="4/4 g4 b d' g' d' b g2", source_type="tinynotation")
    assert call(alice, "key_analysis", score_id="tune")["key"] == "G major"


def test_what_is_kept_is_bounded_and_shown_to_operators(alice: Any, chorale: Any, call: Any, settings: Any) -> None:
    call(alice, "key_analysis", score_id="chorale")
    call(alice, "voice_leading_analysis", score_id="chorale")
    call(alice, "pattern_recognition", score_id="chorale")
    assert server_stats()["analysis_results"] == {"entries": 3, "capacity": settings.ANALYSIS_RESULTS_KEPT}
    settings.ANALYSIS_RESULTS_KEPT = 1
    assert results_prune() == 2
    assert list(AnalysisResult.objects.values_list("tool", flat=True)) == ["pattern_recognition"]  # the newest


def test_nothing_is_kept_when_turned_off(alice: Any, chorale: Any, call: Any, settings: Any, monkeypatch: Any) -> None:
    settings.ANALYSIS_RESULTS_KEPT = 0
    runs: list[str] = []
    real = voiceleading.voice_leading_analysis
    monkeypatch.setattr(voiceleading, "voice_leading_analysis", lambda music: runs.append("run") or real(music))
    call(alice, "voice_leading_analysis", score_id="chorale")
    call(alice, "voice_leading_analysis", score_id="chorale")
    assert runs == ["run", "run"] and AnalysisResult.objects.count() == 0
