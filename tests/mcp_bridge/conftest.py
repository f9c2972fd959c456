"""MCP clients (the SDK's own) for the tests of the MCP endpoint.

Every end-to-end test that takes `mcp_mode` runs twice: once as the SDK's `mcp.Client` connects by default
(`server/discover`, protocol 2026-07-28) and once with the initialize handshake of the 2025 era (`legacy`)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

# A plain 2025-era request over HTTP, for the tests that speak the protocol without a client SDK.
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "curl", "version": "1"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture(params=["auto", "legacy"])
def mcp_mode(request: pytest.FixtureRequest) -> str:
    return request.param


@contextlib.asynccontextmanager
async def mcp_session(base_url: str, token: str | None, mode: str = "auto") -> AsyncIterator[Client]:
    """A connected `mcp.Client` over Streamable HTTP in `mode`, with `token` as its bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        Client(streamable_http_client(f"{base_url}/mcp", http_client=http), mode=mode) as client,
    ):
        yield client


def corpus_job_cancelled_by_notification(
    site: str, owner_token: str, other_token: str, *, notified: str | None = None
) -> list[dict[str, Any]]:
    """What a 2025-era TypeScript SDK client does when a call is aborted, against a corpus job: the job's call (id 5)
    is streamed from `site` with the owner's token; after its second progress notification another caller's
    `notifications/cancelled` naming id 5 is posted to `notified` (default `site`), after its third the owner's,
    with the call's event stream kept open meanwhile. Returns the messages the call's stream carried."""

    def headers(token: str) -> dict[str, str]:
        return dict(MCP_HEADERS, Authorization=f"Bearer {token}", **{"MCP-Protocol-Version": "2025-11-25"})

    def cancel(token: str) -> None:
        body = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 5, "reason": "stop"}}
        response = httpx2.post(f"{notified or site}/mcp", json=body, headers=headers(token), timeout=30)
        assert response.status_code == 202, response.text

    params = {
        "name": "analyze_corpus",
        "arguments": {"composer": "bach", "limit": 400},
        "_meta": {"progressToken": "j"},
    }
    call = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": params}
    messages: list[dict[str, Any]] = []
    with (
        httpx2.Client(timeout=120) as http,
        http.stream("POST", f"{site}/mcp", json=call, headers=headers(owner_token)) as stream,
    ):
        for line in stream.iter_lines():
            if not line.startswith("data: "):
                continue
            messages.append(json.loads(line.removeprefix("data: ")))
            if len(messages) == 2:  # the job is under way: someone else's notification of the same id is ignored
                cancel(other_token)
            elif len(messages) == 3:  # it went on; its own caller's stops it
                cancel(owner_token)
    return messages
