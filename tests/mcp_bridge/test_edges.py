"""What /mcp tells a client whose request it will not serve, over real HTTP against the live site: a path below
/mcp, no token or a bad one, a method other than POST, a body that is not one JSON-RPC message, a protocol version
it does not speak, parameters a method does not take."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx2 as httpx
import pytest

from tests.mcp_bridge.conftest import MCP_HEADERS, mcp_session

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


def _sent(body: Any, token: str, version: str) -> tuple[Any, dict[str, str]]:
    """`body` and its headers as a client of `version`'s era sends them."""
    if version != "2026-07-28" or not isinstance(body, dict):
        return body, _authorised(token, version)
    enveloped, mirrored = _modern(body, version)
    return enveloped, dict(_authorised(token, version), **mirrored)


@pytest.mark.parametrize(
    ("request_id", "kind"),
    [
        (None, "null"),
        ({"a": 1}, "an object"),
        (1.5, "a number with a fractional part"),
        (True, "a boolean"),
        ([1], "an array"),
    ],
    ids=["null", "object", "fraction", "boolean", "array"],
)
def test_a_request_whose_id_is_not_a_string_or_an_integer_is_answered_invalid_in_every_era(
    live_site: str, alice: Any, token_for: Any, request_id: Any, kind: str
) -> None:
    # JSON-RPC 2.0 section 5 answers it -32600 with a null id; the 2025-era transport took it for a notification
    # and answered 202 with nothing, the call unanswered.
    token = token_for(alice)
    call = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call"}
    call["params"] = {"name": "list_scores", "arguments": {}}
    for version in ("2025-06-18", "2025-11-25", "2026-07-28"):
        body, headers = _sent(call, token, version)
        answer = httpx.post(f"{live_site}/mcp", json=body, headers=headers)
        assert answer.status_code == 400, (version, answer.text)
        assert answer.json()["id"] is None
        assert answer.json()["error"]["code"] == -32600
        assert answer.json()["error"]["message"] == f"A request id must be a string or an integer, not {kind}"


def test_a_large_request_with_a_null_id_is_answered_too(live_site: str, alice: Any, token_for: Any) -> None:
    source = "tinynotation: 4/4 " + "c4 d4 e4 f4 " * 8_000  # a body of about 100 KB
    arguments = {"score_id": "big", "source": source, "source_type": "tinynotation"}
    call = {
        "jsonrpc": "2.0",
        "id": None,
        "method": "tools/call",
        "params": {"name": "import_score", "arguments": arguments},
    }
    answer = httpx.post(f"{live_site}/mcp", json=call, headers=_authorised(token_for(alice)))
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == -32600
    assert not alice.scores.exists()  # and nothing ran


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'"tools/list"', "A JSON-RPC message must be a JSON object"),
        (b"5", "A JSON-RPC message must be a JSON object"),
        (json.dumps([PING, PING]).encode(), "JSON-RPC batches are not supported"),
        (json.dumps({"id": 1, "method": "ping"}).encode(), 'A JSON-RPC message must carry "jsonrpc": "2.0"'),
        (json.dumps({"jsonrpc": "1.0", "id": 1, "method": "ping"}).encode(), 'must carry "jsonrpc": "2.0"'),
        (json.dumps({"jsonrpc": "2.0", "id": 1}).encode(), "A JSON-RPC message must name its method"),
        (json.dumps({"jsonrpc": "2.0", "id": 1, "method": 7}).encode(), "The method must be a string"),
    ],
    ids=["string", "number", "batch", "no-jsonrpc", "jsonrpc-1.0", "no-method", "method-a-number"],
)
def test_a_body_that_is_not_one_json_rpc_message_is_an_invalid_request_saying_why(
    live_site: str, alice: Any, token_for: Any, body: bytes, problem: str
) -> None:
    token = token_for(alice)
    for version in ("2025-06-18", "2026-07-28"):
        answer = httpx.post(f"{live_site}/mcp", content=body, headers=_authorised(token, version))
        assert answer.status_code == 400, (version, answer.text)
        assert answer.json()["id"] is None
        assert answer.json()["error"]["code"] == -32600
        assert problem in answer.json()["error"]["message"]
        assert "pydantic" not in answer.text


def test_params_that_are_not_an_object_are_invalid_params_with_the_request_id(
    live_site: str, alice: Any, token_for: Any
) -> None:
    call = {"jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": ["cursor"]}
    answer = httpx.post(f"{live_site}/mcp", json=call, headers=_authorised(token_for(alice)))
    assert answer.status_code == 400
    assert answer.json() == {
        "jsonrpc": "2.0",
        "id": 4,
        "error": {"code": -32602, "message": "params must be an object", "data": None},
    }


SPOKEN = ["2025-06-18", "2025-11-25", "2026-07-28"]  # the versions the SPEC promises; the SDK negotiates older too


@pytest.mark.parametrize("version", ["banana", "1999-01-01", "2027-01-01"])
def test_an_unsupported_protocol_version_is_named_with_every_version_the_server_speaks(
    live_site: str, alice: Any, token_for: Any, version: str
) -> None:
    token = token_for(alice)
    plain = (PING, _authorised(token, version))  # a 2025-era request under a version it does not know
    enveloped, mirrored = _modern({"jsonrpc": "2.0", "id": "ping-1", "method": "ping"}, version)
    modern = (enveloped, dict(_authorised(token, version), **mirrored))  # a 2026-era one, the envelope naming it
    for body, headers in (plain, modern):
        answer = httpx.post(f"{live_site}/mcp", json=body, headers=headers)
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert error["code"] == -32022  # UnsupportedProtocolVersionError
        assert f"Unsupported protocol version '{version}'" in error["message"]
        assert all(spoken in error["message"] for spoken in SPOKEN)
        assert error["data"]["requested"] == version
        assert set(SPOKEN) <= set(error["data"]["supported"])
        assert answer.json()["id"] == "ping-1"

    # server/discover names the same versions: a client picks one of them and retries
    discover, mirrored = _modern({"jsonrpc": "2.0", "id": 1, "method": "server/discover"})
    found = httpx.post(f"{live_site}/mcp", json=discover, headers=dict(_authorised(token, "2026-07-28"), **mirrored))
    assert found.json()["result"]["supportedVersions"] == error["data"]["supported"]


def test_a_client_of_each_era_still_connects_and_calls(
    mcp_mode: str, live_site: str, alice: Any, token_for: Any
) -> None:
    token = token_for(alice)

    async def conversation() -> Any:
        async with mcp_session(live_site, token, mcp_mode) as session:
            return await session.call_tool("list_scores", {})

    assert anyio.run(conversation).structured_content["scores"] == []
