"""What /mcp tells a client whose request it will not serve, over real HTTP against the live site: a path below
/mcp, no token or a bad one, a method other than POST, a body that is not one JSON-RPC message, a protocol version
it does not speak, parameters a method does not take."""

from __future__ import annotations

import json
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


def _answer(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC answer, whether it came as one JSON body or as the last event of a stream."""
    if response.headers["content-type"].startswith("text/event-stream"):
        data = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
        return json.loads(data[-1])
    return response.json()


def _modern(body: dict[str, Any], version: str = "2026-07-28") -> tuple[dict[str, Any], dict[str, str]]:
    """`body` as a 2026-07-28 client sends it: the per-request envelope, and the headers that mirror the body."""
    meta = {"io.modelcontextprotocol/protocolVersion": version, "io.modelcontextprotocol/clientCapabilities": {}}
    params = body.get("params")
    enveloped = dict(body, params=dict(params, _meta=meta) if isinstance(params, dict) else {"_meta": meta})
    headers = {"Mcp-Method": str(body.get("method"))}
    if isinstance(params, dict) and isinstance(params.get("name"), str):
        headers["Mcp-Name"] = params["name"]
    return enveloped, headers


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"name": "list_scores", "arguments": 5}, "params.arguments must be an object"),
        ({"name": "list_scores", "arguments": ["limit", 1]}, "params.arguments must be an object"),
        ({"arguments": {}}, "params.name is required"),
    ],
    ids=["arguments-a-number", "arguments-an-array", "no-name"],
)
def test_a_tool_call_with_parameters_the_protocol_refuses_is_told_which_and_why(
    live_site: str, alice: Any, token_for: Any, params: dict[str, Any], problem: str
) -> None:
    token = token_for(alice)
    call = {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": params}
    streamed = dict(call, params=dict(params, _meta={"progressToken": "p"}))  # answered by the SDK's transport
    modern, modern_headers = _modern(call)
    for body, headers in (
        (call, _authorised(token)),
        (streamed, _authorised(token)),
        (call, _authorised(token, "2025-11-25")),
        (modern, dict(_authorised(token, "2026-07-28"), **modern_headers)),
    ):
        answer = _answer(httpx.post(f"{live_site}/mcp", json=body, headers=headers))
        assert answer["id"] == 9
        assert answer["error"]["code"] == -32602
        assert answer["error"]["message"] == f"Invalid request parameters: {problem}"


@pytest.mark.parametrize("version", [None, "2025-06-18", "2026-07-28"])
def test_every_method_but_post_is_405_saying_post_is_the_one_allowed(
    live_site: str, alice: Any, token_for: Any, version: str | None
) -> None:
    headers = _authorised(token_for(alice), version)
    for method in ("GET", "DELETE", "PUT", "PATCH"):
        answer = httpx.request(method, f"{live_site}/mcp", headers=headers)
        assert answer.status_code == 405, method
        assert answer.headers["Allow"] == "POST", method  # RFC 9110 section 15.5.6
        assert answer.json()["error"]["message"].endswith("send requests by POST."), method
    assert "no sessions" in httpx.delete(f"{live_site}/mcp", headers=headers).json()["error"]["message"]
