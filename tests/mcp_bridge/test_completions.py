"""Completions of what a person types into a prompt's arguments or the score://{score_id} template, as an MCP
client asks for them in both protocol eras."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import PromptReference, ResourceTemplateReference

from apps.tools.models import Score
from apps.tools.services.export import EXPORT_FORMATS
from tests.mcp_bridge.conftest import mcp_session

TEMPLATE = ResourceTemplateReference(uri="score://{score_id}")


def _import(call: Any, user: Any, *score_ids: str) -> None:
    for score_id in score_ids:
        call(user, "import_score", score_id=score_id, source="4/4 c4 d e f", source_type="tinynotation")


def test_score_ids_complete_from_the_callers_own_scores_only(
    mcp_mode: str, live_site: str, alice: Any, bob: Any, token_for: Any, call: Any
) -> None:
    _import(call, alice, "chorale", "chant", "minuet")
    _import(call, bob, "bobs-chorale")
    alice_token, bob_token = token_for(alice), token_for(bob)

    async def conversation() -> None:
        async with mcp_session(live_site, alice_token, mcp_mode) as session:
            found = (await session.complete(TEMPLATE, {"name": "score_id", "value": "ch"})).completion
            assert (found.values, found.total, found.has_more) == (["chant", "chorale"], 2, False)
            prompt = PromptReference(name="compare_keys")
            found = (await session.complete(prompt, {"name": "other_score_id", "value": ""})).completion
            assert found.values == ["chant", "chorale", "minuet"]
        async with mcp_session(live_site, bob_token, mcp_mode) as session:
            for ref, name in [(TEMPLATE, "score_id"), (PromptReference(name="analyse_chorale"), "score_id")]:
                for typed in ("", "c", "ch", "chorale"):
                    found = (await session.complete(ref, {"name": name, "value": typed})).completion
                    assert "chorale" not in found.values and "chant" not in found.values
            found = (await session.complete(TEMPLATE, {"name": "score_id", "value": ""})).completion
            assert found.values == ["bobs-chorale"]

    anyio.run(conversation)


def test_score_ids_are_offered_a_hundred_at_a_time_with_the_total(
    mcp_mode: str, live_site: str, alice: Any, token_for: Any
) -> None:
    Score.objects.bulk_create(
        Score(owner=alice, score_id=f"etude-{n:03}", source_format="tinynotation", source_text="4/4 c4")
        for n in range(130)
    )
    token = token_for(alice)

    async def conversation() -> None:
        async with mcp_session(live_site, token, mcp_mode) as session:
            found = (await session.complete(TEMPLATE, {"name": "score_id", "value": "etude"})).completion
            assert len(found.values) == 100 and found.values[0] == "etude-000"
            assert (found.total, found.has_more) == (130, True)
            found = (await session.complete(TEMPLATE, {"name": "score_id", "value": "etude-12"})).completion
            assert (found.values, found.total, found.has_more) == ([f"etude-12{n}" for n in range(10)], 10, False)

    anyio.run(conversation)


def test_a_token_that_cannot_read_is_offered_no_score_ids(
    mcp_mode: str, live_site: str, alice: Any, token_for: Any, call: Any
) -> None:
    _import(call, alice, "chorale")
    token = token_for(alice, "music21:write")

    async def conversation() -> None:
        async with mcp_session(live_site, token, mcp_mode) as session:
            found = (await session.complete(TEMPLATE, {"name": "score_id", "value": ""})).completion
            assert (found.values, found.total) == ([], 0)

    anyio.run(conversation)


def test_corpus_paths_complete_from_the_bundled_corpus(
    mcp_mode: str, live_site: str, alice: Any, token_for: Any
) -> None:
    token = token_for(alice)
    chorale = PromptReference(name="analyse_chorale")

    async def complete(session: Any, typed: str) -> Any:
        return (await session.complete(chorale, {"name": "chorale", "value": typed})).completion

    async def conversation() -> None:
        async with mcp_session(live_site, token, mcp_mode) as session:
            found = await complete(session, "bach/bwv66")
            assert "bach/bwv66.6" in found.values
            assert all(value.startswith("bach/bwv66") for value in found.values)
            assert "bach/bwv66.6" in (await complete(session, "bwv66.")).values  # below the composer too
            everything_by_bach = await complete(session, "bach/")
            assert len(everything_by_bach.values) == 100
            assert everything_by_bach.has_more is True and everything_by_bach.total > 300
            assert (await complete(session, "no-such-composer/")).values == []

    anyio.run(conversation)


@pytest.mark.parametrize(
    ("prompt", "argument", "typed", "values"),
    [
        ("analyse_chorale", "algorithm", "k", ["krumhansl"]),
        ("analyse_chorale", "algorithm", "", ["all", "aarden", "krumhansl", "bellman", "temperley", "simple"]),
        ("analyse_chorale", "harmony", "", ["roman", "functional", "cadences"]),
        ("render_and_export", "format", "", list(EXPORT_FORMATS)),
        ("render_and_export", "format", "M", ["musicxml", "mxl", "midi"]),
        ("find_patterns", "pattern_type", "r", ["rhythmic"]),
        ("harmonise_melody", "style", "", ["chorale", "classical", "jazz", "pop"]),
        ("harmonise_melody", "melody", "4/4 c", []),  # free text: nothing to offer
    ],
)
def test_enumerated_arguments_complete_from_the_tools_declarations(
    mcp_mode: str,
    live_site: str,
    alice: Any,
    token_for: Any,
    prompt: str,
    argument: str,
    typed: str,
    values: list[str],
) -> None:
    token = token_for(alice)

    async def conversation() -> Any:
        async with mcp_session(live_site, token, mcp_mode) as session:
            return (await session.complete(PromptReference(name=prompt), {"name": argument, "value": typed})).completion

    found = anyio.run(conversation)
    assert (found.values, found.total, found.has_more) == (values, len(values), False)


@pytest.mark.parametrize(
    ("ref", "argument", "named"),
    [
        (PromptReference(name="no_such_prompt"), "score_id", "no_such_prompt"),
        (PromptReference(name="analyse_chorale"), "colour", "colour"),
        (ResourceTemplateReference(uri="file:///{path}"), "path", "file:///{path}"),
    ],
    ids=["unknown-prompt", "unknown-argument", "unknown-template"],
)
def test_completing_what_is_not_there_is_invalid_params_naming_it(
    mcp_mode: str, live_site: str, alice: Any, token_for: Any, ref: Any, argument: str, named: str
) -> None:
    token = token_for(alice)

    async def conversation() -> MCPError:
        async with mcp_session(live_site, token, mcp_mode) as session:
            with pytest.raises(MCPError) as raised:
                await session.complete(ref, {"name": argument, "value": ""})
            return raised.value

    error = anyio.run(conversation)
    assert error.code == -32602
    assert repr(named) in error.message
