"""The tools as a caller sees them through the invocation path: results, ownership, export, rendering, errors."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from music21 import converter, corpus

from apps.core.errors import InsufficientScope, InvalidArguments, NotFound, UnknownTool, UnsupportedFormat
from apps.security.scopes import READ
from apps.tools.models import Score
from apps.tools.registry import TOOLS
from apps.tools.services.cache import ParsedScoreCache, parsed_scores
from apps.tools.services.parsing import parse_stored
from tests.support import in_another_process, manage_py

SCORE_TOOLS = [
    ("score_info", {}),
    ("export_score", {"format": "musicxml"}),
    ("render_score", {}),
    ("key_analysis", {}),
    ("chord_analysis", {}),
    ("harmony_analysis", {"analysis_type": "cadences"}),
    ("voice_leading_analysis", {}),
    ("pattern_recognition", {}),
    ("transpose_score", {"interval": "P5"}),
    ("delete_score", {}),
]


def test_every_spec_tool_is_declared_once_with_a_schema() -> None:
    expected = {
        "import_score",
        "list_scores",
        "score_info",
        "export_score",
        "delete_score",
        "key_analysis",
        "chord_analysis",
        "harmony_analysis",
        "voice_leading_analysis",
        "pattern_recognition",
        "harmonize_melody",
        "generate_counterpoint",
        "imitate_style",
        "transpose_score",
        "render_score",
        "health_check",
    }
    assert expected <= set(TOOLS)
    for tool in TOOLS.values():
        assert tool.description, tool.name
        assert tool.input_schema["type"] == "object", tool.name


@pytest.mark.parametrize(("tool", "extra"), SCORE_TOOLS)
def test_bob_cannot_reach_alices_score_through_any_tool(
    chorale: Any, bob: Any, call: Any, tool: str, extra: dict[str, Any]
) -> None:
    with pytest.raises(NotFound, match="No score with id 'chorale'"):
        call(bob, tool, score_id="chorale", **extra)

    assert Score.objects.filter(score_id="chorale").count() == 1


def test_bob_does_not_see_alices_scores_in_his_list(chorale: Any, bob: Any, call: Any) -> None:
    assert call(bob, "list_scores")["scores"] == []


def test_list_scores_pages_through_every_score_once(alice: Any, call: Any) -> None:
    for number in range(5):
        call(alice, "import_score", score_id=f"s{number}", source="4/4 c4 d e f", source_type="tinynotation")

    seen: list[str] = []
    cursor = None
    while True:
        page = call(alice, "list_scores", limit=2, **({"cursor": cursor} if cursor else {}))
        seen += [s["score_id"] for s in page["scores"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == [f"s{n}" for n in range(5)]
    assert seen[0] == "s4"  # newest first


def test_the_score_read_every_call_makes_is_the_orms_row_without_its_source(
    chorale: Any, alice: Any, bob: Any, django_assert_num_queries: Any
) -> None:
    from apps.tools.selectors import score_get

    with django_assert_num_queries(1):
        read = score_get(owner=alice, score_id="chorale")
    stored = Score.objects.get(owner=alice, score_id="chorale")
    assert read.get_deferred_fields() == set(Score.SOURCE_FIELDS)
    for field in Score._meta.concrete_fields:
        if field.name not in Score.SOURCE_FIELDS:
            assert getattr(read, field.attname) == getattr(stored, field.attname), field.name
    assert read.key_signatures and isinstance(read.key_signatures, list)  # JSON converted, as the ORM does
    assert read.created_at.tzinfo is not None
    assert read.source == stored.source  # the source, asked for, is read then
    with pytest.raises(NotFound, match="No score with id 'chorale'"):
        score_get(owner=bob, score_id="chorale")


def test_delete_removes_the_score_and_its_parsed_copy(chorale: Any, alice: Any, call: Any) -> None:
    pk = Score.objects.get(owner=alice, score_id="chorale").pk
    call(alice, "score_info", score_id="chorale")

    assert call(alice, "delete_score", score_id="chorale")["deleted"] is True
    assert not Score.objects.filter(pk=pk).exists()
    assert not parsed_scores.holds_score(pk)
    with pytest.raises(NotFound):
        call(alice, "score_info", score_id="chorale")


def test_musicxml_export_reimports_to_the_same_notes(chorale: Any, alice: Any, call: Any) -> None:
    exported = call(alice, "export_score", score_id="chorale", format="musicxml")

    assert exported["media_type"] == "application/vnd.recordare.musicxml+xml"
    assert exported["encoding"] == "utf-8"
    again = converter.parse(exported["content"], format="musicxml")
    original = corpus.parse("bach/bwv66.6")
    assert _notes(again) == _notes(original)


def test_midi_export_round_trips_the_pitches(chorale: Any, alice: Any, call: Any) -> None:
    exported = call(alice, "export_score", score_id="chorale", format="midi")

    assert exported["media_type"] == "audio/midi"
    data = base64.b64decode(exported["content"])
    assert data[:4] == b"MThd"
    again = converter.parse(data, format="midi")
    original = corpus.parse("bach/bwv66.6")
    assert sorted(_onsets_and_pitches(again)) == sorted(_onsets_and_pitches(original))


def test_mxl_export_is_a_compressed_musicxml_that_reimports(chorale: Any, alice: Any, call: Any) -> None:
    exported = call(alice, "export_score", score_id="chorale", format="mxl")

    data = base64.b64decode(exported["content"])
    assert data[:2] == b"PK"
    assert _notes(parse_stored("mxl", data=data)) == _notes(corpus.parse("bach/bwv66.6"))


@pytest.mark.parametrize("fmt", ["abc", "humdrum", "lilypond", "pdf"])
def test_formats_music21_cannot_write_are_refused_by_name(chorale: Any, alice: Any, call: Any, fmt: str) -> None:
    with pytest.raises(UnsupportedFormat, match=f"Cannot export '{fmt}'"):
        call(alice, "export_score", score_id="chorale", format=fmt)


def test_unknown_export_format_lists_the_real_ones(chorale: Any, alice: Any, call: Any) -> None:
    with pytest.raises(UnsupportedFormat, match="musicxml, mxl, midi, svg, braille"):
        call(alice, "export_score", score_id="chorale", format="wav")


def test_export_never_returns_a_server_path(chorale: Any, alice: Any, call: Any) -> None:
    for fmt in ("musicxml", "midi", "svg", "braille"):
        exported = call(alice, "export_score", score_id="chorale", format=fmt)
        assert "/tmp" not in exported["content"][:500]  # noqa: S108 - looking for a leaked server path
        assert exported["size_bytes"] > 100


def test_render_draws_notation_glyphs(chorale: Any, alice: Any, call: Any) -> None:
    rendered = call(alice, "render_score", score_id="chorale")

    svg = rendered["svg"]
    assert svg.startswith("<svg")
    assert 'class="note"' in svg
    assert svg.count('class="note"') >= 165  # one group per notehead at least
    assert "<use" in svg  # SMuFL glyphs are drawn by reference


def test_render_a_measure_range_draws_fewer_notes(chorale: Any, alice: Any, call: Any) -> None:
    whole = call(alice, "render_score", score_id="chorale")["svg"].count('class="note"')
    part = call(alice, "render_score", score_id="chorale", measure_start=1, measure_end=2)["svg"].count('class="note"')

    assert 0 < part < whole


@pytest.mark.parametrize(
    ("bounds", "said"),
    [
        ({"measure_start": 3, "measure_end": 40}, "measure_end 40 is not a measure of this score"),
        # alone past the end: out of range, not "after" a measure_end that was never given
        ({"measure_start": 50}, "measure_start 50 is not a measure of this score"),
        ({"measure_start": 12, "measure_end": 10}, "measure_start 12 is not a measure of this score"),
        ({"measure_start": 5, "measure_end": 2}, r"measure_start \(5\) is after measure_end \(2\)"),
    ],
)
def test_render_refuses_measures_the_score_does_not_have(
    chorale: Any, alice: Any, call: Any, bounds: dict[str, int], said: str
) -> None:
    with pytest.raises(InvalidArguments, match=said) as refused:
        call(alice, "render_score", score_id="chorale", **bounds)
    if "after" not in said:
        assert "numbered 0 to 9" in str(refused.value)


def test_a_read_only_caller_cannot_import_and_is_told_the_scope(alice: Any, call: Any) -> None:
    with pytest.raises(InsufficientScope, match="music21:write"):
        call(alice, "import_score", scopes=frozenset({READ}), score_id="x", source="c4")


def test_unknown_tool_lists_the_real_ones(alice: Any, call: Any) -> None:
    with pytest.raises(UnknownTool, match="key_analysis"):
        call(alice, "analyse_everything")


def test_health_check_reports_database_and_cache(alice: Any, call: Any) -> None:
    result = call(alice, "health_check")

    assert result["checks"] == {"database": "ok", "cache": "ok"}
    assert result["versions"]["music21"].startswith("10.")


def test_parsed_score_cache_holds_at_most_its_bound() -> None:
    cache = ParsedScoreCache(capacity=3)
    for pk in range(10):
        cache.put((pk, "x"), object())  # type: ignore[arg-type]

    assert len(cache) == 3
    assert (9, "x") in cache and (0, "x") not in cache
    assert cache.stats.evictions == 7


def test_evicted_scores_are_freed_once_a_tenth_of_the_cache_has_turned_over() -> None:
    import gc
    import weakref

    from music21 import converter

    cache = ParsedScoreCache(capacity=20)
    gone = []
    gc.disable()  # only the cache's own collection may free them (a parsed score is one big reference cycle)
    try:
        for pk in range(21):
            score = converter.parse(f"tinyNotation: 4/4 c4 d e f{pk % 4 + 1}")
            gone.append(weakref.ref(score))
            cache.put((pk, "x"), score)
        del score
        assert gone[0]() is not None  # evicted, but one eviction is not yet a tenth of the capacity
        cache.put((21, "x"), converter.parse("tinyNotation: 4/4 g1"))
        assert gone[0]() is None and gone[1]() is None  # two evictions: collected
        assert gone[2]() is not None  # still cached
    finally:
        gc.enable()


def test_kept_scores_are_out_of_the_collectors_sight_once_answered_and_freed_once_dropped() -> None:
    import gc
    import weakref

    from music21 import converter

    from apps.core.runtime import garbage_after_call

    cache = ParsedScoreCache(capacity=10)  # a tenth of it: one eviction sets off the full collection
    first = converter.parse("tinyNotation: 4/4 c4 d e f")
    gone = weakref.ref(first)
    cache.put((1, "x"), first)
    garbage_after_call()  # the call that parsed it is answered
    # Out of sight: CPython's own full collections, set off by later calls' garbage, no longer walk it.
    assert not any(each is first for each in gc.get_objects(generation=2))
    del first
    for pk in range(2, 12):  # the eleventh score drops the first
        cache.put((pk, "x"), converter.parse(f"tinyNotation: 4/4 g{pk % 4 + 1}"))
        garbage_after_call()
    assert (1, "x") not in cache
    assert gone() is None  # freed, out of sight as it was


def test_a_cache_hit_skips_parsing(chorale: Any, alice: Any, call: Any, monkeypatch: Any) -> None:
    from apps.tools.services import scores

    call(alice, "score_info", score_id="chorale")
    monkeypatch.setattr(scores, "parse_stored", lambda *a, **k: pytest.fail("parsed again despite the cache"))

    assert call(alice, "score_info", score_id="chorale")["notes"] == 165


@pytest.mark.skipif(not settings.REDIS_URL, reason="other processes reach this one through Redis")
def test_a_score_replaced_in_another_process_is_not_answered_from_memory(chorale: Any, alice: Any, call: Any) -> None:
    assert call(alice, "key_analysis", score_id="chorale")["key"] == "F# minor"  # its row is now kept here
    c_major = {
        "score_id": "chorale",
        "source": "4/4 c4 e g c' g e c2",
        "source_type": "tinynotation",
    }
    in_another_process(
        "from django.contrib.auth import get_user_model\n"
        "from apps.tools.invocation import Caller, invoke_tool\n"
        "alice = Caller.operator(get_user_model().objects.get(username='alice'))\n"
        "invoke_tool('delete_score', {'score_id': 'chorale'}, caller=alice)\n"
        f"invoke_tool('import_score', {c_major!r}, caller=alice)\n"
    )

    assert call(alice, "key_analysis", score_id="chorale")["key"] == "C major"


def test_call_tool_prints_the_json_result(chorale: Any, capsys: Any) -> None:
    call_command("call_tool", "score_info", user="alice", arguments='{"score_id": "chorale"}')

    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "success"
    assert result["measures"] == 10


def test_call_tool_reports_errors_in_one_line(chorale: Any) -> None:
    with pytest.raises(CommandError, match=r"^not_found: No score with id 'nope'"):
        call_command("call_tool", "score_info", user="alice", arguments='{"score_id": "nope"}')
    with pytest.raises(CommandError, match="not valid JSON"):
        call_command("call_tool", "score_info", user="alice", arguments="{score_id")
    with pytest.raises(CommandError, match="no active user 'mallory'"):
        call_command("call_tool", "score_info", user="mallory", arguments="{}")
    with pytest.raises(CommandError, match=r"not valid JSON \(the JSON is nested too deeply\)"):
        call_command("call_tool", "score_info", user="alice", arguments="[" * 100_000)


def test_call_tool_refuses_a_deactivated_user(chorale: Any, alice: Any, capsys: Any) -> None:
    alice.is_active = False
    alice.save()

    with pytest.raises(CommandError, match=r"^not_found: no active user 'alice'"):
        call_command("call_tool", "score_info", user="alice", arguments='{"score_id": "chorale"}')
    assert capsys.readouterr().out == ""


def test_call_tool_on_a_database_not_yet_migrated_says_so_in_one_line(tmp_path: Any) -> None:
    result = manage_py(
        "call_tool",
        "list_scores",
        "--user",
        "alice",
        env={**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'new.sqlite3'}"},
    )

    assert result.returncode == 1
    assert result.stderr.startswith("CommandError: unavailable: cannot read the database (no such table: auth_user)")
    assert "run `manage.py migrate`" in result.stderr
    assert "Traceback" not in result.stderr


def _notes(score: Any) -> list[tuple[float, str, float]]:
    return [
        (float(n.getOffsetInHierarchy(score)), n.nameWithOctave, float(n.quarterLength)) for n in score.recurse().notes
    ]


def _onsets_and_pitches(score: Any) -> list[tuple[float, int]]:
    stripped = score.stripTies()
    return [
        (round(float(n.getOffsetInHierarchy(stripped)), 2), p.midi) for n in stripped.recurse().notes for p in n.pitches
    ]


def test_the_tool_reference_in_docs_matches_the_registry() -> None:
    from django.conf import settings

    from apps.tools.docs import tools_markdown

    written = (settings.BASE_DIR / "docs" / "tools.md").read_text()
    assert written == tools_markdown(), "docs/tools.md is out of date: run `python manage.py tools_doc`"


@pytest.mark.django_db(transaction=True)  # the worker thread has its own database connection
def test_render_works_from_worker_threads(chorale: Any, alice: Any, call: Any) -> None:
    # Transports run tools in worker threads; verovio must find its fonts there too.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        result = pool.submit(call, alice, "render_score", score_id="chorale", measure_end=2).result()
    assert 'class="note"' in result["svg"]
