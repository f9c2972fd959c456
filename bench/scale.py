"""Throughput under concurrency and cold start, through the whole MCP HTTP path (uvicorn, token, guards, audit,
metrics), against plain music21 doing the same work in one process.

- throughput: C concurrent clients (raw JSON-RPC over Streamable HTTP, one keep-alive connection each, bounded
  loops on loopback, written to cost the shared cores little: `_Client`) calling a tool for S seconds against
  uvicorn with W workers, each with one tool process: calls/s, p50/p99, errors (any answer but a successful
  result counts as one). One server per worker count serves all its rows, each tool warmed by a first call
  before its rows; each row's connections are opened before its clock starts, spread evenly over the workers.
- cold start: from starting the server process to the first successful tool call, against a fresh Python process
  that imports music21, parses the chorale and runs the same analysis.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.harness import call_failure

ROOT = Path(__file__).resolve().parent.parent
ARGUMENTS = {"score_info": {"score_id": "chorale"}, "key_analysis": {"score_id": "chorale", "algorithm": "aarden"}}


def _server(port: int, workers: int) -> subprocess.Popen[bytes]:
    metrics_dir = tempfile.mkdtemp(prefix="bench-metrics-")
    return subprocess.Popen(  # noqa: S603 - our own interpreter running uvicorn
        [sys.executable, "-m", "uvicorn", "music21_platform.asgi:application", "--port", str(port),
         "--workers", str(workers), "--http", "music21_platform.http:NoDelayHTTPProtocol",
         "--log-level", "warning", "--no-access-log"],
        cwd=ROOT,
        # As deployed: tool calls in killable worker processes, one per uvicorn worker on this 2-core machine
        # (deploy/README.md: workers x tool processes = cores).
        env={**os.environ, "PUBLIC_URL": f"http://127.0.0.1:{port}", "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
             "TOOL_WORKER_PROCESSES": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _wait_ready(base: str, token: str, tool: str, timeout: float = 120) -> float:
    """Seconds until the server first answers `tool` successfully (the cold start), asking every 50 ms."""
    started = time.perf_counter()

    async def attempt() -> bool:
        client = _Client(base, token, tool)
        try:
            return await client.call() is None
        finally:
            await client.close()

    while time.perf_counter() - started < timeout:
        if asyncio.run(attempt()):
            return time.perf_counter() - started
        time.sleep(0.05)
    raise RuntimeError("the server did not answer in time")


@contextlib.contextmanager
def _serving(workers: int) -> Iterator[str]:
    """A server with `workers` uvicorn workers for the rows that use it; its base URL."""
    from bench.mcp_roundtrip import _free_port

    port = _free_port()
    server = _server(port, workers)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


class _Client:
    """One MCP client of the load: a keep-alive HTTP/1.1 connection posting the same JSON-RPC call, written as
    bytes once, and reading each answer by its Content-Length.

    The load shares the server's two cores, so it must cost little: 32 httpx clients spent about 1.2 ms of CPU
    per call, a fifth of what the server spends, taken from the server. A JSON answer must be a successful
    result; anything else (another status, a stream, a tool error, a dropped connection) is an error, and the
    client reconnects."""

    def __init__(self, base: str, token: str, tool: str) -> None:
        parts = urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.head = (
            f"POST /mcp HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n"
            "Accept: application/json, text/event-stream\r\nContent-Type: application/json\r\n"
        )
        self.request = self._request(tool, ARGUMENTS[tool])
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    def _request(self, tool: str, arguments: dict[str, Any]) -> bytes:
        body = json.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
        ).encode()
        return f"{self.head}Content-Length: {len(body)}\r\n\r\n".encode() + body

    async def call(self) -> str | None:
        """One call: None when it succeeded, else what went wrong, in a few words (shown under the table)."""
        try:
            failure = call_failure(*await self._exchange(self.request))
            if failure is None:
                return None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, KeyError, ValueError) as exc:
            failure = type(exc).__name__
        await self.close()
        return failure

    async def serving_process(self) -> int:
        """Which of the server's processes this connection reaches (the tool process behind it, by health_check)."""
        status, content_type, answer = await self._exchange(self._request("health_check", {}))
        if call_failure(status, content_type, answer) is not None:
            raise RuntimeError(f"health_check failed: {answer[:300]!r}")
        return int(json.loads(answer)["result"]["structuredContent"]["process"])

    async def _exchange(self, request: bytes) -> tuple[str, str, bytes]:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
        answer = await reader.readexactly(int(headers["content-length"]))
        return lines[0].split(" ")[1], headers.get("content-type", ""), answer

    async def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


async def _connected_evenly(base: str, token: str, tool: str, clients: int, workers: int) -> list[_Client]:
    """`clients` connections spread evenly over the server's `workers` processes. Connections opened all at once
    mostly reach one process (each uvicorn worker accepts every connection waiting when it wakes), so that a
    2-worker row measured one worker: `key_analysis` with 8 clients served 26 calls/s with 2 workers, as with 1.
    A connection that reaches a process already holding its share is closed and opened again."""
    share = -(-clients // workers)
    held: collections.Counter[int] = collections.Counter()
    connections: list[_Client] = []
    while len(connections) < clients:
        for _ in range(50):
            connection = _Client(base, token, tool)
            process = await connection.serving_process()
            if held[process] < share:
                break
            await connection.close()
        held[process] += 1
        connections.append(connection)
    return connections


def throughput(base: str, token: str, *, clients: int, seconds: float, tool: str, workers: int) -> dict[str, Any]:
    """`clients` clients calling `tool` for `seconds` against a server with `workers` processes that has answered
    this tool already, each client's connection opened beforehand (spread evenly over the processes). The clients
    run in a process of their own, as clients do: in the benchmark's process, which by then holds the scores and
    threads of the rows before, they served a third fewer calls."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as load:
        return load.submit(
            _throughput, base, token, clients=clients, seconds=seconds, tool=tool, workers=workers
        ).result()


def _throughput(base: str, token: str, *, clients: int, seconds: float, tool: str, workers: int) -> dict[str, Any]:
    latencies: list[float] = []
    failures: collections.Counter[str] = collections.Counter()

    async def client(connection: _Client, deadline: float) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            failure = await connection.call()
            latencies.append(time.perf_counter() - started)
            if failure is not None:
                failures[failure] += 1
        await connection.close()

    async def run() -> float:
        connections = await _connected_evenly(base, token, tool, clients, workers)
        started = time.perf_counter()
        await asyncio.gather(*(client(connection, started + seconds) for connection in connections))
        return time.perf_counter() - started

    elapsed = asyncio.run(run())
    latencies.sort()
    return {
        "calls_per_s": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "errors": sum(failures.values()),
        "failures": dict(failures),
        "calls": len(latencies),
    }


def direct_rate(tool: str, seconds: float) -> float:
    """Calls per second of the same music21 work, serially in this process (one core)."""
    from music21 import corpus

    from apps.tools.services import keys
    from apps.tools.services.summary import score_summary

    music = corpus.parse("bach/bwv66.6")
    if tool == "score_info":
        work = lambda: score_summary(music)  # noqa: E731
    else:
        work = lambda: keys.key_analysis(music, algorithm="aarden")  # noqa: E731
    work()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        work()
        count += 1
    return count / (time.perf_counter() - started)


def cold_start(token: str) -> tuple[float, float]:
    started = time.perf_counter()
    with _serving(1) as base:
        _wait_ready(base, token, "key_analysis")
        platform = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "from music21 import corpus; corpus.parse('bach/bwv66.6').analyze('AardenEssen')"],
        check=True,
    )
    return platform, time.perf_counter() - started


def run(
    *, seconds: float = 20.0, clients: tuple[int, ...] = (1, 8, 32), workers: tuple[int, ...] = (1, 2)
) -> tuple[str, dict[tuple[str, int, int], dict[str, Any]]]:
    """The throughput and cold-start tables, and the throughput rows by (tool, workers, clients)."""
    from bench.mcp_roundtrip import _token_for_bench_user

    token = _token_for_bench_user()
    lines = [
        f"\n### Throughput over MCP HTTP ({seconds:g} s per row; each uvicorn worker with one tool process; direct = "
        "the same music21 work, serially, in one process)\n",
        "| tool | workers | clients | calls/s | direct calls/s | ratio | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    tools = ("score_info", "key_analysis")
    direct = {tool: direct_rate(tool, min(seconds, 5.0)) for tool in tools}
    rows: dict[tuple[str, int, int], dict[str, Any]] = {}
    for worker_count in workers:  # one server per worker count, every row of it after a warm-up of its tool
        with _serving(worker_count) as base:
            for tool in tools:
                _wait_ready(base, token, tool)
                for client_count in clients:
                    rows[tool, worker_count, client_count] = throughput(
                        base, token, clients=client_count, seconds=seconds, tool=tool, workers=worker_count
                    )
    for tool, worker_count, client_count in itertools.product(tools, workers, clients):  # the table's order
        row = rows[tool, worker_count, client_count]
        ratio = row["calls_per_s"] / direct[tool]
        lines.append(
            f"| {tool} | {worker_count} | {client_count} | {row['calls_per_s']:.0f} | {direct[tool]:.0f} | "
            f"{ratio:.2f}x | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['errors']} |"
        )
    for (tool, worker_count, client_count), row in rows.items():
        if row["failures"]:
            kinds = ", ".join(f"{count} x {kind}" for kind, count in sorted(row["failures"].items()))
            lines.append(f"\nErrors, {tool} with {worker_count} workers and {client_count} clients: {kinds}.")
    platform, plain = cold_start(token)
    lines += [
        "\n### Cold start\n",
        "| from process start to | seconds |",
        "|---|---|",
        f"| the first successful MCP tool call (uvicorn, 1 worker) | {platform:.2f} |",
        f"| plain music21: import, parse the chorale, analyse its key | {plain:.2f} |",
    ]
    return "\n".join(lines), rows


if __name__ == "__main__":
    import argparse

    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    from bench.harness import setup_django

    setup_django()
    print(run(seconds=args.seconds)[0])
