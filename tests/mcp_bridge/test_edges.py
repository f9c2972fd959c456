"""What /mcp tells a client whose request it will not serve, over real HTTP against the live site: a path below
/mcp, no token or a bad one, a method other than POST, a body that is not one JSON-RPC message, a protocol version
it does not speak, parameters a method does not take."""

from __future__ import annotations

from typing import Any

import httpx2 as httpx
import pytest

from tests.mcp_bridge.conftest import MCP_HEADERS

PING = {"jsonrpc": "2.0", "id": "ping-1", "method": "ping"}


def _authorised(token: str, version: str | None = "2025-06-18") -> dict[str, str]:
    headers = dict(MCP_HEADERS, Authorization=f"Bearer {token}")
    return headers if version is None else dict(headers, **{"MCP-Protocol-Version": version})


@pytest.mark.parametrize("path", ["/mcp/foo/bar", "/mcp/tools"])
def test_a_path_below_mcp_is_not_found_with_a_token_or_without(
    live_site: str, alice: Any, token_for: Any, path: str
) -> None:
    token = token_for(alice)
    for headers in (MCP_HEADERS, _authorised(token)):
        assert httpx.post(f"{live_site}{path}", json=PING, headers=headers).status_code == 404
    for endpoint in ("/mcp", "/mcp/"):  # the endpoint itself still answers, with its trailing slash too
        answer = httpx.post(f"{live_site}{endpoint}", json=PING, headers=_authorised(token))
        assert answer.json() == {"jsonrpc": "2.0", "id": "ping-1", "result": {}}
