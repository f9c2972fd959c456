"""Prompts for the common workflows, as an MCP client lists, gets and follows them (HTTP in both protocol eras,
and stdio)."""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

import anyio
import pytest
from django.conf import settings
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError

from apps.tools.registry import TOOLS
from tests.mcp_bridge.conftest import mcp_session
from tests.support import subprocess_database_url

WORKFLOWS = {"analyse_chorale", "harmonise_melody", "check_voice_leading", "compare_keys"}


def _calls(text: str) -> list[tuple[str, dict[str, Any]]]:
    """The tool calls a prompt asks for, in order: "`tool` with {json arguments}"."""
    decoder = json.JSONDecoder()
    return [(m.group(1), decoder.raw_decode(text, m.end())[0]) for m in re.finditer(r"`(\w+)` with ", text)]


def test_the_workflows_are_listed_with_typed_arguments(
    mcp_mode: str, live_site: str, alice: Any, token_for: Any
) -> None:
    token = token_for(alice)

    async def conversation() -> None:
        async with mcp_session(live_site, token, mcp_mode) as session:
            assert session.server_capabilities.prompts is not None
            assert session.server_capabilities.completions is not None
            prompts = {prompt.name: prompt for prompt in (await session.list_prompts()).prompts}
            assert set(prompts) >= WORKFLOWS
            chorale = prompts["analyse_chorale"]
            arguments = {argument.name: argument for argument in chorale.arguments}
            assert arguments["score_id"].required is True
            assert arguments["chorale"].required is False
            assert "bach/bwv66.6" in arguments["chorale"].description
            # described as the tool argument it feeds is
            assert (
                arguments["algorithm"].description
                == TOOLS["key_analysis"].input_schema["properties"]["algorithm"]["description"]
            )
            assert all(argument.description for prompt in prompts.values() for argument in prompt.arguments)

    anyio.run(conversation)


def test_following_the_chorale_prompt_analyses_the_chorale(
    mcp_mode: str, live_site: str, alice: Any, token_for: Any
) -> None:
    token = token_for(alice)

    async def conversation() -> None:
        async with mcp_session(live_site, token, mcp_mode) as session:
            prompt = await session.get_prompt("analyse_chorale", {"score_id": "bwv66", "chorale": "bach/bwv66.6"})
            text = prompt.messages[0].content.text
            calls = _calls(text)
            assert [tool for tool, _ in calls][:2] == ["import_score", "score_info"]  # and what to do if it exists
            assert {"key_analysis", "harmony_analysis", "voice_leading_analysis"} <= {tool for tool, _ in calls}
            assert calls[0][1] == {"score_id": "bwv66", "source": "bach/bwv66.6", "source_type": "corpus"}
            answers = {}
            for tool, arguments in calls:
                result = await session.call_tool(tool, arguments)
                assert not result.is_error, (tool, result.content)
                answers[tool] = result.structured_content
            assert answers["key_analysis"]["key"] == "F# minor"

    anyio.run(conversation)


def test_every_prompt_names_declared_tools_with_the_arguments_given(
    mcp_mode: str, live_site: str, alice: Any, token_for: Any
) -> None:
    given = {
        "score_id": "melody",
        "other_score_id": "chorale",
        "melody": "4/4 c'4 d' e' f' g'2 g'",
        "style": "classical",
        "format": "midi",
        "pattern_type": "melodic",
        "algorithm": "krumhansl",
    }

    token = token_for(alice)

    async def conversation() -> None:
        async with mcp_session(live_site, token, mcp_mode) as session:
            for prompt in (await session.list_prompts()).prompts:
                arguments = {a.name: given[a.name] for a in prompt.arguments if a.name in given}
                text = (await session.get_prompt(prompt.name, arguments)).messages[0].content.text
                calls = _calls(text)
                assert calls, prompt.name
                assert {tool for tool, _ in calls} <= set(TOOLS), prompt.name
                assert all(c[1]["score_id"] in ("melody", "chorale", "<new_score_id>") for c in calls), prompt.name
            harmonise = await session.get_prompt(
                "harmonise_melody", {"score_id": "melody", "melody": given["melody"], "style": "classical"}
            )
            calls = dict(_calls(harmonise.messages[0].content.text))
            assert calls["import_score"]["source"] == given["melody"]
            assert calls["harmonize_melody"]["style"] == "classical"

    anyio.run(conversation)


@pytest.mark.parametrize(
    ("name", "arguments", "named"),
    [
        ("no_such_prompt", {}, "no_such_prompt"),
        ("analyse_chorale", {}, "score_id"),
        ("compare_keys", {"score_id": "a"}, "other_score_id"),
        ("analyse_chorale", {"score_id": "a", "algorithm": "astrology"}, "algorithm"),
        ("analyse_chorale", {"score_id": "../etc/passwd"}, "score_id"),
        ("check_voice_leading", {"score_id": "a", "voices": "4"}, "voices"),
    ],
    ids=["unknown-prompt", "missing-required", "missing-second", "bad-enum", "bad-score-id", "unknown-argument"],
)
def test_a_wrong_prompt_request_is_invalid_params_naming_what_is_wrong(
    mcp_mode: str, live_site: str, alice: Any, token_for: Any, name: str, arguments: dict[str, str], named: str
) -> None:
    token = token_for(alice)

    async def conversation() -> MCPError:
        async with mcp_session(live_site, token, mcp_mode) as session:
            with pytest.raises(MCPError) as raised:
                await session.get_prompt(name, arguments)
            return raised.value

    error = anyio.run(conversation)
    assert error.code == -32602
    assert repr(named) in error.message


def test_stdio_serves_the_prompts_and_completes_the_users_scores(mcp_mode: str, alice: Any, call: Any) -> None:
    call(alice, "import_score", score_id="minuet", source="4/4 c4 d e f", source_type="tinynotation")
    server = StdioServerParameters(
        command=sys.executable,
        args=["manage.py", "mcp_stdio", "--user", "alice"],
        env={**os.environ, "DATABASE_URL": subprocess_database_url()},
        cwd=str(settings.BASE_DIR),
    )

    async def conversation() -> None:
        from mcp_types import PromptReference

        async with Client(server, mode=mcp_mode) as session:
            assert {p.name for p in (await session.list_prompts()).prompts} >= WORKFLOWS
            text = (await session.get_prompt("check_voice_leading", {"score_id": "minuet"})).messages[0].content.text
            assert "voice_leading_analysis" in text
            found = await session.complete(
                PromptReference(name="check_voice_leading"), {"name": "score_id", "value": "mi"}
            )
            assert found.completion.values == ["minuet"]

    anyio.run(conversation)
