"""MCP clients (the SDK's own) for the tests of the MCP endpoint.

Every end-to-end test that takes `mcp_mode` runs twice: once as the SDK's `mcp.Client` connects by default
(`server/discover`, protocol 2026-07-28) and once with the initialize handshake of the 2025 era (`legacy`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

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
