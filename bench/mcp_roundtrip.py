"""MCP round trips through the whole HTTP path (uvicorn in its own process, bearer-token verification, the SDK's
Streamable HTTP transport and client, guards, audit, metrics) against the same music21 work called directly.

"The same work" is the function the tool runs (apps.tools.services), called in this process on a chorale parsed
here: the music21 a user would otherwise run, with the same output. Both sides are warmed the same way (five
calls each, not counted) and timed alternately, call by call."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import anyio

from bench.harness import Row, Timing

SECTION = "MCP over HTTP (uvicorn process, OAuth token, SDK client) vs direct music21 (bach/bwv66.6)"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _token_for_bench_user() -> str:
    from django.contrib.auth import get_user_model
    from django.utils import timezone
    from oauth2_provider.models import AccessToken, Application, set_token_value

    from apps.tools.invocation import Caller, invoke_tool

    user, _ = get_user_model().objects.get_or_create(username="bench-mcp")
    user.scores.all().delete()
    invoke_tool(
        "import_score",
        {"score_id": "chorale", "source": "bach/bwv66.6", "source_type": "corpus"},
        caller=Caller.operator(user),
    )
    application = Application.objects.create(
        name="bench",
        client_type="public",
        authorization_grant_type="authorization-code",
        redirect_uris="http://127.0.0.1:9/cb",
    )
    raw = secrets.token_urlsafe(32)
    token = AccessToken(
        user=user,
        application=application,
        scope="music21:read music21:write",
        expires=timezone.now() + timedelta(hours=1),
    )
    set_token_value(token, raw)
    token.save()
    return raw


def run(repeat: int = 30) -> list[Row]:
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from music21 import corpus

    from apps.tools.services import analysis
    from apps.tools.services.summary import score_summary

    token = _token_for_bench_user()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(  # noqa: S603 - our own interpreter running uvicorn
        [
            sys.executable,
            "-m",
            "uvicorn",
            "music21_platform.asgi:application",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "PUBLIC_URL": base},
    )
    music = corpus.parse("bach/bwv66.6")
    direct = {
        "score_info": lambda: score_summary(music),
        "key_analysis": lambda: analysis.key_analysis(music, algorithm="aarden"),
        "chord_analysis": lambda: analysis.chord_analysis(music),
    }
    arguments = {
        "score_info": {"score_id": "chorale"},
        "key_analysis": {"score_id": "chorale", "algorithm": "aarden"},
        "chord_analysis": {"score_id": "chorale"},
    }

    async def measure() -> list[Row]:
        rows = []
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http,
            streamable_http_client(f"{base}/mcp", http_client=http) as (read_stream, write_stream),
            ClientSession(read_stream, write_stream) as session,
        ):
            await session.initialize()
            for tool, call_direct in direct.items():
                ours: list[float] = []
                theirs: list[float] = []
                for i in range(repeat + 5):
                    start = time.perf_counter()
                    result = await session.call_tool(tool, arguments[tool])
                    elapsed = time.perf_counter() - start
                    if result.is_error:
                        raise RuntimeError(f"{tool} failed: {result.content}")
                    start = time.perf_counter()
                    call_direct()
                    direct_elapsed = time.perf_counter() - start
                    if i >= 5:  # warm-up calls are not counted
                        ours.append(elapsed)
                        theirs.append(direct_elapsed)
                rows.append(Row(SECTION, tool, Timing(ours), Timing(theirs)))
        return rows

    try:
        for _ in range(300):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        return anyio.run(measure)
    finally:
        server.terminate()
        server.wait(timeout=20)
