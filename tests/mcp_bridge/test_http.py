"""MCP over HTTP with the SDK's own client against the real app under uvicorn, with platform tokens."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

import anyio
import httpx2 as httpx
import pytest
from django.conf import settings as django_settings
from oauth2_provider.models import AccessToken

from apps.security import scopes
from apps.tools.registry import TOOLS
from tests.mcp_bridge.conftest import INITIALIZE, MCP_HEADERS, corpus_job_cancelled_by_notification, mcp_session
from tests.support import eventually, in_another_process


def _text(result: Any) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


@pytest.mark.parametrize(
    ("authorization", "error"),
    [(None, None), ("Basic YWxpY2U6cGFzc3dvcmQ=", None), ("Bearer not-a-token", "invalid_token")],
    ids=["no-credentials", "another-scheme", "unknown-token"],
)
def test_without_a_valid_token_mcp_answers_401_pointing_at_the_metadata(
    live_site: str, authorization: str | None, error: str | None
) -> None:
    headers = dict(MCP_HEADERS, **({"Authorization": authorization} if authorization else {}))
    for method in ("POST", "GET", "DELETE"):
        response = httpx.request(method, f"{live_site}/mcp", json=INITIALIZE, headers=headers)
        assert response.status_code == 401
        challenge = response.headers["WWW-Authenticate"]
        # The scopes the tools need (RFC 6750 section 3; the MCP authorization specification's scope selection),
        # which SDK clients ask for instead of every scope of the metadata, music21:admin among them.
        metadata = (
            f'resource_metadata="{live_site}/.well-known/oauth-protected-resource/mcp", '
            'scope="music21:read music21:write"'
        )
        if error is None:  # RFC 6750 section 3.1: no bearer token at all is told where to look, and no error
            assert challenge == f"Bearer {metadata}"
        else:
            assert challenge.startswith(f'Bearer error="{error}", ') and challenge.endswith(metadata)


def test_a_token_holder_lists_every_tool_and_analyses_a_chorale(
    mcp_mode: str, live_site: str, alice: Any, token_for: Any
) -> None:
    token = token_for(alice)

    async def conversation() -> None:
        async with mcp_session(live_site, token, mcp_mode) as session:
            listed = await session.list_tools()
            assert {t.name for t in listed.tools} == set(TOOLS)
            key_tool = next(t for t in listed.tools if t.name == "key_analysis")
            assert key_tool.input_schema["required"] == ["score_id"]
            assert key_tool.annotations.read_only_hint is True
            assert key_tool.annotations.destructive_hint is False
            delete_tool = next(t for t in listed.tools if t.name == "delete_score")
            assert delete_tool.annotations.destructive_hint is True  # clients ask before calling it
            assert delete_tool.annotations.read_only_hint is False

            imported = await session.call_tool(
                "import_score", {"score_id": "chorale", "source": "bach/bwv66.6", "source_type": "corpus"}
            )
            assert not imported.is_error, _text(imported)
            assert imported.structured_content["measures"] == 10
            assert imported.structured_content["notes"] == 165

            key = await session.call_tool("key_analysis", {"score_id": "chorale"})
            assert key.structured_content["key"] == "F# minor"
            assert json.loads(_text(key))["key"] == "F# minor"  # the same result as text for the model

    anyio.run(conversation)


def test_notation_and_binary_exports_come_back_as_content(
    mcp_mode: str, live_site: str, alice: Any, token_for: Any
) -> None:
    token = token_for(alice)

    async def conversation() -> None:
        async with mcp_session(live_site, token, mcp_mode) as session:
            await session.call_tool("import_score", {"score_id": "c", "source": "bach/bwv66.6"})
            rendered = await session.call_tool("render_score", {"score_id": "c", "measure_end": 2})
            assert not rendered.is_error, _text(rendered)
            images = [c for c in rendered.content if c.type == "image"]
            assert images and images[0].mime_type == "image/svg+xml"
            svg = base64.b64decode(images[0].data).decode()
            assert svg.lstrip().startswith("<svg") or "<svg" in svg[:300]
            assert 'class="note"' in svg

            midi = await session.call_tool("export_score", {"score_id": "c", "format": "midi"})
            assert midi.structured_content["media_type"] == "audio/midi"
            assert base64.b64decode(midi.structured_content["content"]).startswith(b"MThd")

    anyio.run(conversation)


def test_scores_are_resources_of_their_owner(
    mcp_mode: str, live_site: str, alice: Any, bob: Any, token_for: Any
) -> None:
    alice_token, bob_token = token_for(alice), token_for(bob)

    async def conversation() -> None:
        async with mcp_session(live_site, alice_token, mcp_mode) as session:
            await session.call_tool("import_score", {"score_id": "chorale", "source": "bach/bwv66.6"})
            listed = await session.list_resources()
            assert [str(r.uri) for r in listed.resources] == ["score://chorale"]
            read = await session.read_resource("score://chorale")
            assert "<score-partwise" in read.contents[0].text
        async with mcp_session(live_site, bob_token, mcp_mode) as session:
            assert (await session.list_resources()).resources == []
            with pytest.raises(Exception, match="not_found"):
                await session.read_resource("score://chorale")

    anyio.run(conversation)


def test_a_read_only_token_cannot_import_and_is_told_which_scope(
    mcp_mode: str, live_site: str, alice: Any, token_for: Any
) -> None:
    token = token_for(alice, scopes.READ)

    async def conversation() -> None:
        async with mcp_session(live_site, token, mcp_mode) as session:
            result = await session.call_tool("import_score", {"score_id": "x", "source": "bach/bwv66.6"})
            assert result.is_error
            assert "music21:write" in _text(result)
            assert result.structured_content["error"] == "insufficient_scope"
            assert (await session.list_resources()).resources == []

    anyio.run(conversation)


def test_bob_cannot_reach_alices_scores_even_by_guessing_ids(
    mcp_mode: str, live_site: str, alice: Any, bob: Any, token_for: Any
) -> None:
    alice_token, bob_token = token_for(alice), token_for(bob)

    async def conversation() -> None:
        async with mcp_session(live_site, alice_token, mcp_mode) as session:
            await session.call_tool("import_score", {"score_id": "chorale", "source": "bach/bwv66.6"})
        async with mcp_session(live_site, bob_token, mcp_mode) as session:
            for tool, extra in [
                ("score_info", {}),
                ("export_score", {"format": "musicxml"}),
                ("render_score", {}),
                ("key_analysis", {}),
                ("delete_score", {}),
            ]:
                result = await session.call_tool(tool, {"score_id": "chorale", **extra})
                assert result.is_error
                assert result.structured_content["error"] == "not_found", tool
        async with mcp_session(live_site, alice_token, mcp_mode) as session:
            still_there = await session.call_tool("score_info", {"score_id": "chorale"})
            assert still_there.structured_content["notes"] == 165

    anyio.run(conversation)


def test_an_abc_source_naming_a_server_file_is_a_tool_error_and_stores_nothing(
    mcp_mode: str, live_site: str, alice: Any, token_for: Any, tmp_path: Any
) -> None:
    # music21's converter.parse read a file named by the source: any caller could import the server's own files.
    secret = tmp_path / "secret.abc"
    secret.write_text("X:1\nT:Server secret\nM:4/4\nL:1/4\nK:C\ncdef|\n")
    token = token_for(alice)

    async def conversation() -> None:
        async with mcp_session(live_site, token, mcp_mode) as session:
            result = await session.call_tool(
                "import_score", {"score_id": "s", "source": str(secret), "source_type": "abc"}
            )
            assert result.is_error
            assert result.structured_content["error"] == "rejected_input"
            assert "is a file path or URL, which the server does not open" in _text(result)
            assert (await session.call_tool("list_scores", {})).structured_content["scores"] == []

    anyio.run(conversation)


def test_a_revoked_token_stops_working_at_once(mcp_mode: str, live_site: str, alice: Any, token_for: Any) -> None:
    token = token_for(alice)

    async def first() -> None:
        async with mcp_session(live_site, token, mcp_mode) as session:
            assert not (await session.call_tool("list_scores", {})).is_error

    anyio.run(first)
    AccessToken.objects.get(token_checksum=hashlib.sha256(token.encode()).hexdigest()).revoke()
    response = httpx.post(
        f"{live_site}/mcp", json=INITIALIZE, headers=dict(MCP_HEADERS, Authorization=f"Bearer {token}")
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="other processes reach this one through Redis")
def test_a_token_revoked_by_another_process_stops_working_at_once(live_site: str, alice: Any, token_for: Any) -> None:
    token = token_for(alice)
    headers = dict(MCP_HEADERS, Authorization=f"Bearer {token}")
    for _ in range(2):  # verified, then remembered by this server
        assert httpx.post(f"{live_site}/mcp", json=INITIALIZE, headers=headers).status_code == 200
    checksum = hashlib.sha256(token.encode()).hexdigest()
    in_another_process(  # an administrator's shell, or another server's /o/revoke_token/
        "from oauth2_provider.models import AccessToken\n"
        f"AccessToken.objects.get(token_checksum={checksum!r}).revoke()\n"
    )
    assert httpx.post(f"{live_site}/mcp", json=INITIALIZE, headers=headers).status_code == 401


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="other processes reach this one through Redis")
def test_a_user_blocked_in_another_process_is_refused_at_the_next_call(
    live_site: str, alice: Any, token_for: Any
) -> None:
    token = token_for(alice)

    async def list_scores() -> Any:
        async with mcp_session(live_site, token) as session:
            return await session.call_tool("list_scores", {})

    for _ in range(2):  # checked, then remembered by this server as not blocked
        assert not anyio.run(list_scores).is_error
    in_another_process(  # an administrator's shell, or another server's security events
        "from datetime import timedelta\n"
        "from django.utils import timezone\n"
        "from apps.security.models import Block\n"
        f"Block.objects.create(target='user', value='{alice.pk}', reason='test', "
        "until=timezone.now() + timedelta(minutes=5))\n"
    )
    refused = anyio.run(list_scores)
    assert refused.is_error and "blocked until" in _text(refused)


def test_an_expired_token_is_refused(live_site: str, alice: Any, token_for: Any) -> None:
    token = token_for(alice, expires_in=-5)
    response = httpx.post(
        f"{live_site}/mcp", json=INITIALIZE, headers=dict(MCP_HEADERS, Authorization=f"Bearer {token}")
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


def test_a_corpus_job_reports_progress_as_it_goes(
    mcp_mode: str, live_site: str, alice: Any, token_for: Any, celery_worker: None
) -> None:
    token = token_for(alice, scopes.READ)
    progress: list[tuple[float, float | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total))

    async def conversation() -> Any:
        async with mcp_session(live_site, token, mcp_mode) as session:
            return await session.call_tool(
                "analyze_corpus", {"path_pattern": "bach/bwv6*", "analysis": "key"}, progress_callback=on_progress
            )

    result = anyio.run(conversation)
    assert not result.is_error, _text(result)
    works = result.structured_content["summary"]["works"]
    assert works > 8
    # the start and the end, and between them the chunks the job saw finish (several may finish between its polls)
    assert len(progress) >= 2
    assert progress[0][0] == 0 and progress[-1] == (works, works)
    # each notification advances it (MCP: progress "MUST increase with each notification")
    assert [done for done, _ in progress] == sorted({done for done, _ in progress})


def test_a_2025_client_stops_a_corpus_job_by_notification_while_its_stream_stays_open(
    live_site: str, alice: Any, bob: Any, token_for: Any, celery_worker: None
) -> None:
    # What the TypeScript SDK's 2025-era clients do when a call is aborted: POST `notifications/cancelled` naming
    # the request, and keep the call's event stream open. The stateless transport serves that notification in a
    # session of its own, so it used to be dropped and the job ran on to its end.
    from apps.compliance.models import AuditEvent

    messages = corpus_job_cancelled_by_notification(
        live_site, token_for(alice, scopes.READ), token_for(bob, scopes.READ)
    )
    assert len(messages) >= 3
    assert [message.get("method") for message in messages] == ["notifications/progress"] * len(messages)
    assert messages[-1]["params"]["progress"] < 400  # stopped, and the cancelled request is not answered
    # the job stops at its next step, and records so
    assert eventually(lambda: AuditEvent.objects.filter(action="tool.analyze_corpus").exists(), seconds=60)
    assert AuditEvent.objects.get(action="tool.analyze_corpus").outcome == "cancelled"


def test_a_call_is_answered_as_json_unless_it_asks_for_progress(live_site: str, alice: Any, token_for: Any) -> None:
    token = token_for(alice)
    headers = dict(MCP_HEADERS, Authorization=f"Bearer {token}", **{"MCP-Protocol-Version": "2025-06-18"})

    def call(meta: dict[str, Any]) -> httpx.Response:
        arguments = {"score_id": f"c{len(meta)}", "source": "bach/bwv66.6", "source_type": "corpus"}
        body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call"}
        body["params"] = {"name": "import_score", "arguments": arguments, "_meta": meta}
        return httpx.post(f"{live_site}/mcp", json=body, headers=headers)

    plain = call({})
    assert plain.status_code == 200
    assert plain.headers["content-type"] == "application/json"
    assert plain.json()["result"]["structuredContent"]["notes"] == 165

    streamed = call({"progressToken": "p1"})
    assert streamed.status_code == 200
    assert streamed.headers["content-type"].startswith("text/event-stream")
    data = [line.removeprefix("data: ") for line in streamed.text.splitlines() if line.startswith("data: ")]
    assert json.loads(data[-1])["result"]["structuredContent"]["notes"] == 165


def test_a_call_is_answered_only_once_its_audit_event_is_written(
    mcp_mode: str, live_site: str, alice: Any, token_for: Any, monkeypatch: Any
) -> None:
    from apps.compliance.models import AuditEvent

    save = AuditEvent.save

    def slow_save(event: Any, *args: Any, **kwargs: Any) -> None:
        time.sleep(0.5)  # a slow audit INSERT: an answer that did not wait for it would come first
        save(event, *args, **kwargs)

    monkeypatch.setattr(AuditEvent, "save", slow_save)
    token = token_for(alice)

    async def call(name: str, arguments: dict[str, Any]) -> Any:
        async with mcp_session(live_site, token, mcp_mode) as session:
            return await session.call_tool(name, arguments)

    def tool_events() -> list[tuple[str, str, str]]:
        events = AuditEvent.objects.filter(action__startswith="tool.").order_by("id")
        return [(e.action, e.outcome, e.transport) for e in events]

    imported = anyio.run(call, "import_score", {"score_id": "c", "source": "bach/bwv66.6"})
    assert imported.structured_content["notes"] == 165
    assert tool_events() == [("tool.import_score", "success", "mcp-http")]  # there as soon as the answer is

    missing = anyio.run(call, "key_analysis", {"score_id": "missing"})
    assert missing.is_error and "not_found" in _text(missing)
    assert tool_events()[-1] == ("tool.key_analysis", "not_found", "mcp-http")


def test_the_garbage_a_call_leaves_is_collected_after_it_is_answered(
    mcp_mode: str, live_site: str, alice: Any, token_for: Any, monkeypatch: Any
) -> None:
    import gc
    import threading

    from apps.mcp_bridge import server

    held, collected = threading.Event(), threading.Event()

    def collect_when_released() -> None:
        held.wait(timeout=10)  # not released by then: the answer waited for the collection, which fails the test
        gc.collect(1)
        collected.set()

    monkeypatch.setattr(server, "garbage_after_call", collect_when_released)
    token = token_for(alice)
    answers: list[Any] = []

    async def conversation() -> None:
        async with mcp_session(live_site, token, mcp_mode) as session:
            answers.append(await session.call_tool("import_score", {"score_id": "c", "source": "bach/bwv66.6"}))

    try:
        anyio.run(conversation)
        assert answers[0].structured_content["notes"] == 165 and not collected.is_set()
    finally:
        held.set()
    assert collected.wait(timeout=60)  # and then the call's thread collected it


PING = {"jsonrpc": "2.0", "id": "ping-1", "method": "ping"}


@pytest.mark.parametrize(
    ("headers", "body", "status", "answer"),
    [
        ({}, PING, 200, {"jsonrpc": "2.0", "id": "ping-1", "result": {}}),
        ({}, {"jsonrpc": "2.0", "id": 2, "method": "no/such"}, 200, {"code": -32601}),
        ({}, {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"arguments": {}}}, 200, {"code": -32602}),
        ({}, {"jsonrpc": "2.0", "method": "notifications/initialized"}, 202, None),
        ({}, [PING], 400, {"code": -32600}),
        ({}, b"{not json", 400, {"code": -32700}),
        ({"Accept": "text/html"}, PING, 406, {"code": -32600}),
        ({"Origin": "http://evil.example"}, PING, 403, None),
    ],
    ids=["ping", "unknown-method", "call-without-name", "notification", "batch", "not-json", "accept", "origin"],
)
def test_protocol_answers_hold_whichever_way_a_post_is_served(
    live_site: str, alice: Any, token_for: Any, headers: dict[str, str], body: Any, status: int, answer: Any
) -> None:
    # A plain request is answered by the SDK's single-request driver, anything else by its transport: the
    # client sees the SDK's answers either way.
    sent = dict(MCP_HEADERS, Authorization=f"Bearer {token_for(alice)}", **{"MCP-Protocol-Version": "2025-06-18"})
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(f"{live_site}/mcp", content=content, headers={**sent, **headers})
    assert response.status_code == status, response.text
    if answer is None:
        return
    reply = response.json()
    if "code" in answer:
        assert reply["error"]["code"] == answer["code"]
    else:
        assert reply == answer


def test_closing_the_call_stops_the_corpus_job(
    mcp_mode: str, live_site: str, alice: Any, token_for: Any, settings: Any, monkeypatch: Any
) -> None:
    # Chunks run in this process here (eager), so the test can count them; with workers the same flag revokes
    # the queued tasks instead.
    settings.CELERY_TASK_ALWAYS_EAGER = True
    from apps.tools.services import corpus

    chunks_run: list[int] = []
    original = corpus.corpus_analyze_works

    def slow_chunk(paths: list[str], analysis: str) -> list[dict[str, Any]]:
        chunks_run.append(len(paths))
        time.sleep(0.3)
        return original(paths, analysis)

    monkeypatch.setattr("apps.tools.tasks.corpus_analyze_works", slow_chunk)
    token = token_for(alice, scopes.READ)

    async def conversation() -> None:
        async with mcp_session(live_site, token, mcp_mode) as session:
            with anyio.move_on_after(1.0):
                await session.call_tool("analyze_corpus", {"composer": "bach", "limit": 200})

    anyio.run(conversation)
    time.sleep(1.5)  # time for the worker thread to notice at its next chunk
    stopped_at = len(chunks_run)
    time.sleep(1.0)
    assert len(chunks_run) == stopped_at  # nothing more runs
    assert stopped_at < 200 / 8  # far from the 25 chunks of the whole job


def test_refused_tokens_are_recorded_as_auth_failures(live_site: str, alice: Any, token_for: Any) -> None:
    from apps.security.models import SecurityEvent

    httpx.post(f"{live_site}/mcp", json=INITIALIZE, headers=MCP_HEADERS)  # discovery: no token, no failure
    assert not SecurityEvent.objects.exists()
    response = httpx.post(
        f"{live_site}/mcp", json=INITIALIZE, headers=dict(MCP_HEADERS, Authorization="Bearer stolen-or-guessed")
    )
    assert response.status_code == 401
    event = SecurityEvent.objects.get()
    assert (event.kind, event.ip, event.detail["endpoint"]) == ("auth_failure", "127.0.0.1", "/mcp")


def test_an_unknown_tool_is_a_protocol_error_naming_the_real_ones(
    mcp_mode: str, live_site: str, alice: Any, token_for: Any
) -> None:
    from mcp.shared.exceptions import MCPError

    token = token_for(alice)

    async def conversation() -> None:
        async with mcp_session(live_site, token, mcp_mode) as session:
            with pytest.raises(MCPError) as refused:
                await session.call_tool("no_such_tool", {})
            assert refused.value.error.code == -32602
            assert "no_such_tool" in refused.value.error.message
            assert "key_analysis" in refused.value.error.message

    anyio.run(conversation)


def test_whitespace_around_the_mcp_headers_is_not_part_of_their_value(
    live_site: str, alice: Any, token_for: Any
) -> None:
    # SEP-2243 and RFC 9110 section 5.5: "Mcp-Name:  list_scores  " names the tool list_scores. Sent over a raw
    # socket: HTTP client libraries refuse to send a header value with trailing whitespace.
    import socket
    from urllib.parse import urlsplit

    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    params = {"name": "list_scores", "arguments": {}, "_meta": meta}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}).encode()
    address = urlsplit(live_site)
    head = (
        "POST /mcp HTTP/1.1\r\n"
        f"Host: {address.netloc}\r\n"
        f"Authorization: Bearer {token_for(alice)}\r\n"
        "Accept: application/json, text/event-stream\r\n"
        "Content-Type: application/json\r\n"
        "MCP-Protocol-Version: 2026-07-28\r\n"
        "Mcp-Method: tools/call \r\n"
        "Mcp-Name:   list_scores  \r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(head.encode() + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.decode().partition("\r\n")
    assert " 200 " in status_line, answer.decode()
    assert '"scores":[]' in rest.replace(" ", "")
