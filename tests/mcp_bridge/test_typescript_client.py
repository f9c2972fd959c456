"""The official TypeScript SDK's client against the real app under uvicorn: tests/interop/ts_client.mjs, run on the
Node pinned in tests/package.json.

Three clients: the SDK's current line (`@modelcontextprotocol/client` 2.x) pinned to protocol 2026-07-28 and in its
legacy mode (the 2025-11-25 initialize handshake), and the v1 package (`@modelcontextprotocol/sdk` 1.x), which speaks
2025-11-25 at most. Then the OAuth path with nothing but the /mcp URL: the SDK discovers, registers and builds the
PKCE authorization URL; the test plays the person at the browser; the SDK exchanges the code and works.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from oauth2_provider.models import AccessToken, Application

from apps.compliance.models import AuditEvent
from apps.security import scopes
from apps.tools.registry import TOOLS
from tests.interop import TESTS, node, package_version, run_json
from tests.security.oauth_flow import REDIRECT_URI, Browser
from tests.support import eventually

SCRIPT = "interop/ts_client.mjs"


@pytest.mark.parametrize(
    ("client", "protocol_version"),
    [("v2-2026-07-28", "2026-07-28"), ("v2-2025-11-25", "2025-11-25"), ("v1-2025-11-25", "2025-11-25")],
)
def test_the_typescript_sdk_lists_analyses_renders_and_reads_a_chorale(
    live_site: str, alice: Any, token_for: Any, client: str, protocol_version: str
) -> None:
    summary = run_json(SCRIPT, "token", f"{live_site}/mcp", client, env={"MCP_TOKEN": token_for(alice)})

    assert summary.get("error") is None, summary
    assert summary["sdkVersion"] == package_version(summary["sdk"])
    assert summary["protocolVersion"] == protocol_version
    # what went over the wire is that era's: server/discover and no initialize in 2026-07-28, the reverse before
    methods = [request.get("rpc") for request in summary["wire"] if request.get("rpc")]
    if protocol_version == "2026-07-28":
        assert methods[0] == "server/discover" and "initialize" not in methods
        assert {r["protocolVersion"] for r in summary["wire"] if r.get("rpc")} == {"2026-07-28"}
    else:
        assert methods[0] == "initialize" and "server/discover" not in methods
    # every request succeeded, but the GET for a standing event stream that 2025 clients send after the handshake:
    # this stateless server offers none (405, as the MCP specification allows) and the client carries on without
    assert all(
        request["status"] < 400 or (request["method"], request["status"]) == ("GET", 405) for request in summary["wire"]
    ), summary["wire"]

    assert summary["tools"] == sorted(TOOLS)
    assert not summary["import"]["isError"], summary["import"]["text"]
    assert summary["import"]["structured"]["measures"] == 10
    assert summary["import"]["structured"]["notes"] == 165
    assert summary["key"]["key"] == "F# minor", summary["key"]["text"]

    render = summary["render"]
    assert not render["isError"], render
    assert render["image"]["mimeType"] == "image/svg+xml"
    assert "<svg" in render["image"]["svgHead"]

    assert summary["resource"]["uri"] == "score://chorale"
    assert summary["resource"]["hasScorePartwise"]
    assert alice.scores.get(score_id="chorale").notes_count == 165


@pytest.mark.parametrize("client", ["v2-2026-07-28", "v2-2025-11-25", "v1-2025-11-25"])
def test_a_corpus_job_the_typescript_sdk_aborts_stops_while_the_client_stays_connected(
    live_site: str, alice: Any, token_for: Any, celery_worker: None, client: str
) -> None:
    # 2026-07-28 clients cancel by closing the call's stream; 2025-era ones POST notifications/cancelled and keep
    # it open, which the stateless transport used to drop: the job ran through every chunk.
    script = subprocess.Popen(  # noqa: S603 - our own pinned binary and script
        [node(), SCRIPT, "cancel", f"{live_site}/mcp", client],
        cwd=TESTS,
        env={**os.environ, "MCP_TOKEN": token_for(alice, scopes.READ)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        aborted = json.loads(script.stdout.readline())
        assert aborted["aborted"] and "stopped by the user" in aborted["error"], aborted

        # the client is still connected: only its cancellation can stop the job before it ends
        assert eventually(lambda: AuditEvent.objects.filter(action="tool.analyze_corpus").exists(), seconds=300)
        assert AuditEvent.objects.get(action="tool.analyze_corpus").outcome == "cancelled"
    finally:
        out, _ = script.communicate("close\n", timeout=120)
    summary = json.loads(out.strip().splitlines()[-1])
    assert "error" not in summary and summary["callError"] == aborted["error"], summary
    assert summary["progress"] == [0]


def test_the_typescript_sdk_with_only_the_url_signs_in_with_oauth_and_works(
    live_site: str, alice: Any, tmp_path: Any
) -> None:
    mcp_url = f"{live_site}/mcp"
    state_dir = str(tmp_path / "oauth")

    started = run_json(SCRIPT, "oauth-start", mcp_url, state_dir)
    assert started.get("error") is None, started
    # Discovery from the 401 alone: the challenge, the protected-resource metadata it names, the authorization
    # server's metadata, dynamic registration.
    wire = [(r["method"], r["path"], r["status"]) for r in started["wire"]]
    first = started["wire"][0]
    assert (first["method"], first["path"], first["status"]) == ("POST", "/mcp", 401)
    assert f'resource_metadata="{live_site}/.well-known/oauth-protected-resource/mcp"' in first["wwwAuthenticate"]
    assert ("GET", "/.well-known/oauth-protected-resource/mcp", 200) in wire
    assert ("GET", "/.well-known/oauth-authorization-server", 200) in wire
    assert ("POST", "/o/register/", 201) in wire
    client = Application.objects.get(client_id=started["clientId"])
    assert client.name == "music21 TypeScript SDK client"

    authorization_url = started["authorizationUrl"]
    query = parse_qs(urlsplit(authorization_url).query)
    assert authorization_url.startswith(f"{live_site}/o/authorize/")
    assert query["code_challenge_method"] == ["S256"]
    assert query["client_id"] == [started["clientId"]]
    assert query["redirect_uri"] == [REDIRECT_URI]
    assert query["resource"] == [mcp_url]
    # The scopes the challenge named, which the SDK prefers to the metadata's scopes_supported: an assistant is
    # not asked operator access (music21:admin) it has no use for at /mcp.
    assert query["scope"] == ["music21:read music21:write"]

    # The person at the browser: signs in as alice and allows the client on the consent page.
    browser = Browser.logged_in(live_site, "alice")
    page = browser.http.get(authorization_url)
    assert "Allow" in page.text and "music21 TypeScript SDK client" in page.text
    redirect = browser.consent(page)
    assert redirect["iss"] == [live_site]  # RFC 9207, which the SDK checks before it redeems the code
    callback = f"{REDIRECT_URI}?{urlencode({k: v[0] for k, v in redirect.items()})}"

    finished = run_json(SCRIPT, "oauth-finish", mcp_url, state_dir, env={"OAUTH_CALLBACK": callback})
    assert finished.get("error") is None, finished
    assert ("POST", "/o/token/", 200) in [(r["method"], r["path"], r["status"]) for r in finished["exchange"]]
    assert finished["token"]["tokenType"].lower() == "bearer"
    assert finished["token"]["hasRefreshToken"]
    assert set(finished["token"]["scope"].split()) >= {"music21:read", "music21:write"}
    eras = {run["client"]: run for run in finished["runs"]}
    assert eras["v2-2026-07-28"]["protocolVersion"] == "2026-07-28"
    assert eras["v2-2025-11-25"]["protocolVersion"] == "2025-11-25"
    for run in eras.values():
        assert "import_score" in run["tools"]
        assert not run["import"]["isError"], run["import"]["text"]
        assert run["key"]["key"] == "F# minor", run["key"]["text"]

    # Every call acted as alice, under the token issued to the client that registered itself.
    assert alice.scores.filter(score_id__startswith="chorale-").count() == 2
    assert AccessToken.objects.filter(user=alice, application=client).exists()
