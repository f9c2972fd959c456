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


def test_the_sdk_still_keeps_the_lifespan_state_where_the_front_reads_it() -> None:
    # apps.mcp_bridge.front answers a plain call with the SDK's serve_one, passing the lifespan state the session
    # manager entered: the SDK keeps it as the private `_lifespan_state`. An SDK upgrade that moves it fails here.
    from apps.mcp_bridge.front import ResponseModePerRequest
    from apps.mcp_bridge.server import build_server

    async def identify(ctx: Any) -> Any:
        raise AssertionError("not called")

    manager = ResponseModePerRequest(app=build_server(identify=identify), stateless=True)
    seen: list[Any] = []

    async def running() -> None:
        async with manager.run():
            seen.append(manager._lifespan_state)
        seen.append(manager._lifespan_state)

    assert manager._lifespan_state is None
    anyio.run(running)
    assert seen[0] is not None and seen[1] is None
