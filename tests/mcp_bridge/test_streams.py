"""GET /mcp: this stateless server sends nothing unasked, so it offers no standing event stream (405, as the MCP
specification allows); no idle stream can be held open, however many a token asks for, and clients keep working."""

from __future__ import annotations

from typing import Any

import anyio
import httpx2 as httpx

from tests.mcp_bridge.conftest import mcp_session

SSE_HEADERS = {"Accept": "text/event-stream", "MCP-Protocol-Version": "2025-06-18"}


def test_get_mcp_opens_no_stream_and_says_to_use_post(live_site: str, alice: Any, token_for: Any) -> None:
    token = token_for(alice)
    headers = dict(SSE_HEADERS, Authorization=f"Bearer {token}")

    # Were a stream opened, the server would hold each one open, sending nothing, until the client gave up: the
    # read timeout would fire. Every one of many asks is answered at once instead.
    with httpx.Client(timeout=5) as client:
        answers = [client.get(f"{live_site}/mcp", headers=headers) for _ in range(20)]

    assert {answer.status_code for answer in answers} == {405}
    assert answers[0].headers["Allow"] == "POST"
    assert "POST" in answers[0].json()["error"]["message"]


def test_get_mcp_without_a_token_still_points_at_the_metadata(live_site: str) -> None:
    answer = httpx.get(f"{live_site}/mcp", headers=SSE_HEADERS, timeout=5)

    assert answer.status_code == 401
    assert "resource_metadata=" in answer.headers["WWW-Authenticate"]


def test_the_sdk_client_works_with_no_event_stream_offered(
    mcp_mode: str, live_site: str, alice: Any, token_for: Any
) -> None:
    token = token_for(alice)

    async def conversation() -> None:
        async with mcp_session(live_site, token, mcp_mode) as session:
            imported = await session.call_tool(
                "import_score", {"score_id": "chorale", "source": "bach/bwv66.6", "source_type": "corpus"}
            )
            assert imported.structured_content["notes"] == 165
            assert (await session.list_tools()).tools

    anyio.run(conversation)
