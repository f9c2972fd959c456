"""Scores as MCP resources: the template, and what a client is told when a resource is not there (both eras)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp.shared.exceptions import MCPError

from tests.mcp_bridge.conftest import mcp_session


@pytest.mark.parametrize(
    ("uri", "said"),
    [
        ("score://nothing-here", "No score with id 'nothing-here'"),
        ("score://chorale", "No score with id 'chorale'"),  # alice's: to bob, as missing as any other
        ("file:///etc/passwd", "scores are score://{score_id}"),
        ("score://", "'' is not a score id"),
        ("score://chorale/musicxml", "'chorale/musicxml' is not a score id"),
    ],
    ids=["missing-score", "another-users-score", "unknown-scheme", "no-score-id", "not-a-score-id"],
)
def test_reading_a_resource_that_is_not_there_is_invalid_params_with_its_uri(
    mcp_mode: str, live_site: str, alice: Any, bob: Any, token_for: Any, call: Any, uri: str, said: str
) -> None:
    call(alice, "import_score", score_id="chorale", source="4/4 c4 d e f", source_type="tinynotation")
    token = token_for(bob)

    async def conversation() -> MCPError:
        async with mcp_session(live_site, token, mcp_mode) as session:
            with pytest.raises(MCPError) as raised:
                await session.read_resource(uri)
            return raised.value

    error = anyio.run(conversation)
    assert error.code == -32602
    assert error.data == {"uri": uri}
    assert said in error.message
    assert "export_score" not in error.message  # a tool the client never called


def test_the_score_template_is_listed_and_read_as_musicxml(
    mcp_mode: str, live_site: str, alice: Any, token_for: Any, call: Any
) -> None:
    call(alice, "import_score", score_id="minuet", source="4/4 c4 d e f", source_type="tinynotation")
    token = token_for(alice)

    async def conversation() -> None:
        async with mcp_session(live_site, token, mcp_mode) as session:
            templates = (await session.list_resource_templates()).resource_templates
            assert [(t.uri_template, t.mime_type) for t in templates] == [
                ("score://{score_id}", "application/vnd.recordare.musicxml+xml")
            ]
            listed = (await session.list_resources()).resources
            assert [str(r.uri) for r in listed] == ["score://minuet"]
            assert listed[0].description.endswith("4 notes")
            read = (await session.read_resource("score://minuet")).contents[0]
            assert read.mime_type == "application/vnd.recordare.musicxml+xml" and "<score-partwise" in read.text

    anyio.run(conversation)


def test_a_malformed_cursor_is_invalid_params_in_every_list(
    mcp_mode: str, live_site: str, alice: Any, token_for: Any
) -> None:
    # The MCP specification: "Invalid cursors SHOULD result in an error with code -32602". The lists that fit in
    # one page answered the first page again, and resources/list spoke of list_scores and its next_cursor.
    token = token_for(alice)

    async def conversation() -> dict[str, MCPError]:
        refused = {}
        async with mcp_session(live_site, token, mcp_mode) as session:
            for method, listing in [
                ("tools/list", session.list_tools),
                ("prompts/list", session.list_prompts),
                ("resources/list", session.list_resources),
                ("resources/templates/list", session.list_resource_templates),
            ]:
                with pytest.raises(MCPError) as raised:
                    await listing(cursor="not-a-cursor")
                refused[method] = raised.value
            assert (await session.list_tools()).tools  # without a cursor, the list as ever
        return refused

    for method, error in anyio.run(conversation).items():
        assert error.code == -32602, method
        assert error.message.startswith("Unknown cursor 'not-a-cursor'"), error.message
        assert method in error.message and "list_scores" not in error.message
        assert error.data == {"cursor": "not-a-cursor"}
