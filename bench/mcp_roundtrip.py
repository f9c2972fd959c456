"""MCP round trips through the whole HTTP path (uvicorn in its own process, bearer-token verification, the
Streamable HTTP transport, guards, audit, metrics) against the same music21 work called directly.

"The same work" is the function the tool runs (apps.tools.services), called in this process on a chorale parsed
here: the music21 a user would otherwise run, with the same output. Two clients make the same calls:

- `LeanClient`, a minimal MCP client (the `initialize` handshake, then JSON-RPC posts on one keep-alive
  connection, each answer read whole and decoded): what the platform adds to a call, which is the target;
- the Python SDK's own client (`ClientSession` over `streamable_http_client`): what a user of that client pays on
  top, its own CPU included (it shares this machine's two cores with the server).

All three (lean, SDK, direct) are warmed the same way (five calls each, not counted) and timed in turn, call by
call, so that a noisy neighbour hurts them alike."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio

from bench.harness import Row, Timing, call_failure, lean_client_heap

SECTION = "MCP over HTTP (uvicorn process, OAuth token, minimal client) vs direct music21 (bach/bwv66.6)"
SDK_SECTION = "The same calls with the Python SDK's client (its own CPU included) vs direct music21"
# Samples per side, in multiples of --repeat. A median of n samples is uncertain by about 1.25 standard deviations
# over the square root of n: chord_analysis's calls (0.15-0.3 s) spread by some 7 ms about their median, which
# made the added milliseconds of two medians of 60 samples uncertain by +-1.6 ms, half the 3 ms target; 120 bring
# that to about +-1.1 (18 s more). key_analysis's spread is narrower; 180 samples cost 3 s more than 90. The SDK's
# client is timed on the two short tools only: what it adds does not depend on the tool, and its calls would take
# the time that chord_analysis's samples need.
REPEAT = {"score_info": 10, "key_analysis": 6, "chord_analysis": 4}
SDK_TOOLS = ("score_info", "key_analysis")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LeanClient:
    """A minimal MCP client over Streamable HTTP: `initialize` and `notifications/initialized`, then each call one
    POST on a keep-alive connection, its JSON answer read whole and decoded. Anything but a successful result
    raises."""

    def __init__(self, base: str, token: str) -> None:
        parts = urlsplit(base)
        self.connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=60)
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
        }
        self.ids = 0
        initialized = self._post(
            "initialize",
            {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}},
        )
        self.headers["MCP-Protocol-Version"] = initialized["protocolVersion"]
        status, _, body = self._exchange({"jsonrpc": "2.0", "method": "notifications/initialized"})
        if status != "202":
            raise RuntimeError(f"notifications/initialized: HTTP {status}, {body[:300]!r}")

    def call_tool(self, name: str, arguments: dict[str, Any]) -> None:
        failure = call_failure(*self._exchange(self._request("tools/call", {"name": name, "arguments": arguments})))
        if failure is not None:
            raise RuntimeError(f"{name} failed: {failure}")

    def _post(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        message = self._request(method, params)
        status, content_type, body = self._exchange(message)
        reply = json.loads(body) if (status, content_type) == ("200", "application/json") else {}
        if reply.get("id") != message["id"] or "result" not in reply:
            raise RuntimeError(f"{method}: HTTP {status}, {body[:300]!r}")
        return reply["result"]

    def _request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.ids += 1
        return {"jsonrpc": "2.0", "id": self.ids, "method": method, "params": params}

    def _exchange(self, message: dict[str, Any]) -> tuple[str, str, bytes]:
        """POST one message: the answer's status, content type and body."""
        self.connection.request("POST", "/mcp", json.dumps(message), self.headers)
        response = self.connection.getresponse()
        return str(response.status), response.getheader("Content-Type") or "", response.read()

    def close(self) -> None:
        self.connection.close()


def bench_token(username: str) -> str:
    """A bearer token for the bench user `username` (created, their scores cleared), as a client gets one through
    the OAuth flow: read and write scopes, an hour to live."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone
    from oauth2_provider.models import AccessToken, Application, set_token_value

    user, _ = get_user_model().objects.get_or_create(username=username)
    user.scores.all().delete()
    application = Application.objects.create(
        name=username,
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


def _token_for_bench_user() -> str:
    """bench_token for the round trips' user, who holds bach/bwv66.6 as "chorale"."""
    from django.contrib.auth import get_user_model

    from apps.tools.invocation import Caller, invoke_tool

    raw = bench_token("bench-mcp")
    invoke_tool(
        "import_score",
        {"score_id": "chorale", "source": "bach/bwv66.6", "source_type": "corpus"},
        caller=Caller.operator(get_user_model().objects.get(username="bench-mcp")),
    )
    return raw


def run(repeat: int = 30) -> list[Row]:
    token = _token_for_bench_user()
    # The rows measure what the platform adds to the music21 work, so the server does the work on every call:
    # remembered answers (apps.tools.results) would skip it (bench/analysis.py and bench/mcp_analysis.py time them).
    with uvicorn_serving({"ANALYSIS_RESULTS_KEPT": "0"}) as base:
        return _measured(base, token, repeat)


@contextlib.contextmanager
def uvicorn_serving(environment: dict[str, str]) -> Iterator[str]:
    """The platform served by uvicorn in its own process (with `environment` on top of this one's), once it
    accepts connections; yields its base URL."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "uvicorn", "music21_platform.asgi:application", "--port", str(port)]
    server = subprocess.Popen(  # noqa: S603 - our own interpreter running uvicorn
        [*command, "--log-level", "warning"],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "PUBLIC_URL": base, **environment},
    )
    try:
        for _ in range(300):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=20)


def _measured(base: str, token: str, repeat: int) -> list[Row]:
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from music21 import corpus

    from apps.tools.services import harmony, keys
    from apps.tools.services.summary import score_summary

    music = corpus.parse("bach/bwv66.6")
    direct = {
        "score_info": lambda: score_summary(music),
        "key_analysis": lambda: keys.key_analysis(music, algorithm="aarden"),
        "chord_analysis": lambda: harmony.chord_analysis(music),
    }
    arguments = {
        "score_info": {"score_id": "chorale"},
        "key_analysis": {"score_id": "chorale", "algorithm": "aarden"},
        "chord_analysis": {"score_id": "chorale"},
    }

    async def measure() -> list[Row]:
        lean = LeanClient(base, token)
        samples: dict[str, dict[str, list[float]]] = {}
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http,
            streamable_http_client(f"{base}/mcp", http_client=http) as (read_stream, write_stream),
            ClientSession(read_stream, write_stream) as session,
        ):
            await session.initialize()
            for tool, call_direct in direct.items():
                times: dict[str, list[float]] = {"lean": [], "sdk": [], "direct": []}
                with_sdk = tool in SDK_TOOLS
                for i in range(repeat * REPEAT[tool] + 5):
                    start = time.perf_counter()
                    lean.call_tool(tool, arguments[tool])
                    lean_elapsed = time.perf_counter() - start
                    if with_sdk:
                        start = time.perf_counter()
                        result = await session.call_tool(tool, arguments[tool])
                        sdk_elapsed = time.perf_counter() - start
                        if result.is_error:
                            raise RuntimeError(f"{tool} failed: {result.content}")
                    start = time.perf_counter()
                    call_direct()
                    direct_elapsed = time.perf_counter() - start
                    if i >= 5:  # warm-up calls are not counted
                        times["lean"].append(lean_elapsed)
                        times["direct"].append(direct_elapsed)
                        if with_sdk:
                            times["sdk"].append(sdk_elapsed)
                samples[tool] = times
        lean.close()
        rows = [Row(SECTION, tool, Timing(t["lean"]), Timing(t["direct"])) for tool, t in samples.items()]
        return rows + [
            Row(SDK_SECTION, tool, Timing(t["sdk"]), Timing(t["direct"])) for tool, t in samples.items() if t["sdk"]
        ]

    with lean_client_heap():
        return anyio.run(measure)
