"""The size limits a client meets over HTTP: a source that import_score admits (MAX_SCORE_BYTES) reaches it, a
larger one gets the tool's own error, and a body past the HTTP limit (which follows MAX_SCORE_BYTES) an error
naming that limit and the setting, in both protocol eras."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import httpx2 as httpx
import pytest
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from mcp.shared.exceptions import MCPError
from music21 import corpus
from music21.musicxml.m21ToXml import GeneralObjectExporter

from apps.mcp_bridge.front import max_body_bytes
from apps.security.models import SecurityEvent
from tests.mcp_bridge.conftest import MCP_HEADERS as PLAIN_MCP_HEADERS
from tests.mcp_bridge.conftest import mcp_session

SMALL_MAX_SCORE_BYTES = 100_000
MCP_HEADERS = {**PLAIN_MCP_HEADERS, "MCP-Protocol-Version": "2025-06-18"}


def _text(result: Any) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


def _chorale_musicxml(size: int) -> str:
    """bwv66.6 as MusicXML of exactly `size` bytes (padded with a comment, which every XML reader skips)."""
    xml = GeneralObjectExporter(corpus.parse("bach/bwv66.6")).parse().decode()
    padding = size - len(xml.encode()) - len("<!---->")
    assert padding >= 0
    at = xml.index("<score-partwise")
    return xml[:at] + "<!--" + "x" * padding + "-->" + xml[at:]


def _import_body(source: str, source_type: str) -> bytes:
    arguments = {"score_id": "big", "source": source, "source_type": source_type}
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "import_score", "arguments": arguments},
    }
    return json.dumps(body).encode()


@pytest.fixture
def small_scores(settings: Any) -> int:
    """MAX_SCORE_BYTES of 100 kB for the server the test starts (request it before live_site)."""
    settings.MAX_SCORE_BYTES = SMALL_MAX_SCORE_BYTES
    return SMALL_MAX_SCORE_BYTES


def test_a_musicxml_source_just_under_max_score_bytes_is_imported(
    mcp_mode: str, live_site: str, alice: Any, token_for: Any, settings: Any
) -> None:
    source = _chorale_musicxml(settings.MAX_SCORE_BYTES - 1)
    assert len(_import_body(source, "musicxml")) > DEFAULT_MAX_REQUEST_BODY_SIZE  # the SDK's default would refuse it
    token = token_for(alice)

    async def conversation() -> Any:
        async with mcp_session(live_site, token, mcp_mode) as session:
            return await session.call_tool(
                "import_score", {"score_id": "big", "source": source, "source_type": "musicxml"}
            )

    imported = anyio.run(conversation)
    assert not imported.is_error, _text(imported)[:300]
    assert imported.structured_content["notes"] == 165


def test_a_base64_midi_source_over_max_score_bytes_gets_the_tools_error_naming_the_setting(
    mcp_mode: str, live_site: str, alice: Any, token_for: Any, settings: Any
) -> None:
    # Base64 of a MIDI header, then more of it: past MAX_SCORE_BYTES, and past the SDK's default body limit, so
    # only the tool's own check stands between it and the parser.
    source = "TVRoZAAAAAY" + "A" * (settings.MAX_SCORE_BYTES - 10)
    assert len(_import_body(source, "midi")) > DEFAULT_MAX_REQUEST_BODY_SIZE
    token = token_for(alice)

    async def conversation() -> Any:
        async with mcp_session(live_site, token, mcp_mode) as session:
            return await session.call_tool("import_score", {"score_id": "big", "source": source, "source_type": "midi"})

    refused = anyio.run(conversation)
    assert refused.is_error
    assert refused.structured_content["error"] == "rejected_input"
    assert f"over the limit of {settings.MAX_SCORE_BYTES:,} bytes (MAX_SCORE_BYTES)" in _text(refused)
    assert not alice.scores.exists()


def test_a_body_over_the_http_limit_is_refused_naming_the_limit_and_its_setting(
    mcp_mode: str, small_scores: int, live_site: str, alice: Any, token_for: Any
) -> None:
    limit = max_body_bytes()
    assert limit == 3 * small_scores + 64 * 1024
    source = _chorale_musicxml(small_scores)  # the tool would admit it...
    assert len(_import_body(source, "musicxml")) < limit  # ...and the HTTP limit lets it through
    token = token_for(alice)

    async def conversation() -> tuple[Any, MCPError]:
        async with mcp_session(live_site, token, mcp_mode) as session:
            admitted = await session.call_tool(
                "import_score", {"score_id": "fits", "source": source, "source_type": "musicxml"}
            )
            with pytest.raises(MCPError) as raised:
                await session.call_tool("import_score", {"score_id": "huge", "source": "x" * limit})
            return admitted, raised.value

    admitted, error = anyio.run(conversation)
    assert not admitted.is_error, _text(admitted)[:300]
    assert error.code == -32600
    assert f"limit of {limit:,} bytes" in error.message
    assert "MAX_SCORE_BYTES" in error.message
    assert error.data == {"max_body_bytes": limit, "setting": "MAX_SCORE_BYTES"}
    assert list(alice.scores.values_list("score_id", flat=True)) == ["fits"]
    event = SecurityEvent.objects.get(kind="hostile_input")
    assert (event.user, event.detail["input_kind"]) == (alice, "oversize")


def _chunked(body: bytes) -> Iterator[bytes]:
    """`body` as a client sends it without a Content-Length: httpx then sends it with Transfer-Encoding: chunked."""
    for at in range(0, len(body), 64 * 1024):
        yield body[at : at + 64 * 1024]


def test_a_body_sent_in_chunks_is_held_to_the_same_limit_and_answered_as_any_other(
    small_scores: int, live_site: str, alice: Any, token_for: Any
) -> None:
    headers = dict(MCP_HEADERS, Authorization=f"Bearer {token_for(alice)}")
    limit = max_body_bytes()

    over = _import_body("x" * limit, "musicxml")
    response = httpx.post(f"{live_site}/mcp", content=_chunked(over), headers=headers, timeout=60)
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["message"].startswith(f"The request body is more than {limit:,} bytes, over this server's limit")
    assert error["data"] == {"max_body_bytes": limit, "setting": "MAX_SCORE_BYTES"}

    under = _import_body(_chorale_musicxml(small_scores), "musicxml")
    response = httpx.post(f"{live_site}/mcp", content=_chunked(under), headers=headers, timeout=60)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"] == "application/json"  # one JSON body, as for a declared length
    assert response.json()["result"]["structuredContent"]["notes"] == 165
    assert list(alice.scores.values_list("score_id", flat=True)) == ["big"]


def test_a_body_in_chunks_that_is_not_one_json_rpc_message_is_told_why(
    live_site: str, alice: Any, token_for: Any
) -> None:
    # The SDK's transport, which read such bodies before, answered a batch with a dump of pydantic's errors.
    headers = dict(MCP_HEADERS, Authorization=f"Bearer {token_for(alice)}")
    batch = json.dumps([{"jsonrpc": "2.0", "id": 1, "method": "ping"}] * 2).encode()
    response = httpx.post(f"{live_site}/mcp", content=_chunked(batch), headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32600
    assert response.json()["error"]["message"].startswith("JSON-RPC batches are not supported")
