"""Browser-based MCP clients (the MCP Inspector serves its page on http://localhost:6274) reach /mcp and its OAuth
discovery from their own origin: a real headless Chromium, on a page another local server serves, fetches them as
such a client does; and the CORS answers a browser relies on, header by header."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2 as httpx
import pytest

from tests.mcp_bridge.conftest import MCP_HEADERS
from tests.support import CHROMIUM, CHROMIUM_ARGS

INSPECTOR = "http://localhost:6274"
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}

# What a browser client does first: a call without a token (the 401 names the resource metadata), the two
# discovery documents, then, once authorised, a call with its token. Every fetch is cross-origin.
CLIENT = """
async ([site, token]) => {
  const read = async (url, init) => {
    try {
      const response = await fetch(url, init);
      const body = await response.text();
      return {status: response.status, body, challenge: response.headers.get('WWW-Authenticate')};
    } catch (error) {
      return {error: String(error)};
    }
  };
  const version = {'MCP-Protocol-Version': '2025-06-18'};
  const post = {'Content-Type': 'application/json', 'Accept': 'application/json, text/event-stream', ...version};
  const ping = JSON.stringify({jsonrpc: '2.0', id: 1, method: 'ping'});
  return {
    refused: await read(`${site}/mcp`, {method: 'POST', headers: post, body: ping}),
    resource: await read(`${site}/.well-known/oauth-protected-resource/mcp`, {headers: version}),
    server: await read(`${site}/.well-known/oauth-authorization-server`, {headers: version}),
    call: await read(`${site}/mcp`, {method: 'POST', headers: {...post, Authorization: `Bearer ${token}`}, body: ping}),
  };
}
"""


@pytest.fixture
def client_page() -> Iterator[str]:
    """A blank page served by another local server, as a browser-based client's own page is: its origin is
    http://localhost:<its port>, which the transport accepts as it accepts the Inspector's."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><title>an MCP client</title>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package (.ci/run installs it)")
def test_a_browser_client_on_its_own_origin_discovers_the_server_and_calls_it(
    live_site: str, alice: Any, token_for: Any, client_page: str
) -> None:
    from playwright.sync_api import sync_playwright

    token = token_for(alice)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(client_page)
            seen = page.evaluate(CLIENT, [live_site, token])
        finally:
            browser.close()

    for fetched in seen.values():  # a fetch the browser blocked has no status, only a TypeError
        assert "error" not in fetched, seen
    assert seen["refused"]["status"] == 401
    metadata = f"{live_site}/.well-known/oauth-protected-resource/mcp"
    assert seen["refused"]["challenge"] == f'Bearer resource_metadata="{metadata}", scope="music21:read music21:write"'
    assert json.loads(seen["resource"]["body"])["resource"] == f"{live_site}/mcp"
    assert json.loads(seen["server"]["body"])["issuer"] == live_site
    assert json.loads(seen["call"]["body"]) == {"jsonrpc": "2.0", "id": 1, "result": {}}


ASKED_HEADERS = "authorization, content-type, accept, mcp-protocol-version, mcp-session-id, last-event-id"


def test_mcp_answers_preflights_without_a_token_and_names_the_origin_it_accepts(
    live_site: str, alice: Any, token_for: Any
) -> None:
    preflight = {"Origin": INSPECTOR, "Access-Control-Request-Method": "POST"}
    answer = httpx.options(
        f"{live_site}/mcp", headers=dict(preflight, **{"Access-Control-Request-Headers": ASKED_HEADERS})
    )
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == INSPECTOR
    assert "Origin" in answer.headers["Vary"]
    allowed = {name.strip().lower() for name in answer.headers["Access-Control-Allow-Headers"].split(",")}
    assert {name.strip() for name in ASKED_HEADERS.split(",")} <= allowed

    call = httpx.post(
        f"{live_site}/mcp",
        json=PING,
        headers=dict(MCP_HEADERS, Origin=INSPECTOR, Authorization=f"Bearer {token_for(alice)}"),
    )
    assert call.json()["result"] == {}
    assert call.headers["Access-Control-Allow-Origin"] == INSPECTOR
    assert "Origin" in call.headers["Vary"]
    exposed = {name.strip().lower() for name in call.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"mcp-session-id", "www-authenticate", "mcp-protocol-version"} <= exposed

    # An origin the transport refuses (DNS rebinding protection) is refused here too: no CORS grant.
    evil = httpx.options(f"{live_site}/mcp", headers=dict(preflight, Origin="http://evil.example"))
    assert "Access-Control-Allow-Origin" not in evil.headers


@pytest.mark.parametrize(
    "path", ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-authorization-server"]
)
def test_the_discovery_documents_are_readable_from_any_origin(live_site: str, path: str) -> None:
    preflight = httpx.options(
        f"{live_site}{path}",
        headers={
            "Origin": "https://client.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "mcp-protocol-version",
        },
    )
    assert preflight.status_code < 300
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "mcp-protocol-version" in preflight.headers["Access-Control-Allow-Headers"].lower()
    assert "GET" in preflight.headers["Access-Control-Allow-Methods"]
    document = httpx.get(f"{live_site}{path}", headers={"Origin": "https://client.example"})
    assert document.headers["Access-Control-Allow-Origin"] == "*"
