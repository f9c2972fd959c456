"""Shared pieces of the benchmarks: an isolated database, timing, and the ratio table."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def setup_django() -> None:
    """Django on a throw-away SQLite database (unless DATABASE_URL is set), so a benchmark never touches yours."""
    if "DATABASE_URL" not in os.environ:
        db = Path(tempfile.mkdtemp(prefix="m21-bench-")) / "bench.sqlite3"
        os.environ["DATABASE_URL"] = f"sqlite:///{db}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "music21_platform.settings")
    # The guards run on every timed call (that is part of the cost measured), but the benchmark's own call rate
    # must not be refused by them.
    os.environ.setdefault("RATE_LIMIT_PER_MINUTE", "100000000")
    os.environ.setdefault("RATE_LIMIT_BURST", "100000000")
    # One INFO line per call, from this process and the servers it starts, would bury the tables (its cost is
    # within the noise: A/B servers at INFO and WARNING differ by less than the order they are called in).
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


@dataclass(frozen=True)
class Timing:
    samples: list[float]  # seconds

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)

    @property
    def p99(self) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


@contextlib.contextmanager
def lean_client_heap() -> Iterator[None]:
    """While an MCP client in this process times calls: what the benchmark process holds besides the client
    (Django, music21, the scores its other rows parsed) kept out of its garbage collector's sight, so that the
    client's own collections walk no more than a client process's would. Put back afterwards."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def timed_call(session: Any, tool: str, arguments: dict[str, Any]) -> tuple[Any, float]:
    """One MCP tool call through the client `session`, and its seconds, timed with this process's garbage collector
    off: a collection that the call's allocations set off runs at the first allocation after it, untimed. Without
    that, the MCP client's full collections (20-120 ms each, walking what the client kept of the calls before) fell
    inside whichever call, of either server, was being timed: a p99 set by the bench's own client."""
    gc.disable()
    try:
        start = time.perf_counter()
        result = await session.call_tool(tool, arguments)
        return result, time.perf_counter() - start
    finally:
        gc.enable()


def measure(work: Callable[[], object], *, repeat: int, warmup: int = 3) -> Timing:
    for _ in range(warmup):
        work()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        samples.append(time.perf_counter() - start)
    return Timing(samples)


def interleaved(
    platform: Callable[[], object], direct: Callable[[], object], *, repeat: int, warmup: int = 3
) -> tuple[Timing, Timing]:
    """Time both sides alternately, so that a noisy neighbour on this shared machine hurts both equally."""
    for _ in range(warmup):
        platform()
        direct()
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        platform()
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        direct()
        theirs.append(time.perf_counter() - start)
    return Timing(ours), Timing(theirs)


@dataclass(frozen=True)
class Row:
    section: str
    name: str
    platform: Timing
    direct: Timing

    @property
    def added_p50_ms(self) -> float:
        return (self.platform.p50 - self.direct.p50) * 1000

    @property
    def added_p99_ms(self) -> float:
        return (self.platform.p99 - self.direct.p99) * 1000

    def cells(self) -> list[str]:
        ms = 1000.0
        return [
            self.name,
            f"{self.platform.p50 * ms:.2f}",
            f"{self.direct.p50 * ms:.2f}",
            f"{self.platform.p50 / self.direct.p50:.2f}x",
            f"{self.added_p50_ms:+.2f}",
            f"{self.platform.p99 * ms:.2f}",
            f"{self.direct.p99 * ms:.2f}",
            f"{self.added_p99_ms:+.2f}",
        ]


HEADER = [
    "benchmark",
    "platform p50 ms",
    "music21 p50 ms",
    "ratio p50",
    "added p50 ms",
    "platform p99 ms",
    "music21 p99 ms",
    "added p99 ms",
]


def table(rows: list[Row]) -> str:
    """A Markdown table, ready to paste into docs/performance.md."""
    lines: list[str] = []
    for section in dict.fromkeys(r.section for r in rows):
        lines.append(f"\n### {section}\n")
        lines.append("| " + " | ".join(HEADER) + " |")
        lines.append("|" + "---|" * len(HEADER))
        lines.extend("| " + " | ".join(r.cells()) + " |" for r in rows if r.section == section)
    return "\n".join(lines)


def call_failure(status: str, content_type: str, answer: bytes) -> str | None:
    """What is wrong with an MCP `tools/call` answer: None for a successful tool result; else the HTTP status, the
    JSON-RPC error code or the tool's error code."""
    if status != "200":
        return f"HTTP {status}"
    if content_type != "application/json":
        return f"answered as {content_type or 'nothing'}"
    reply = json.loads(answer)
    if "error" in reply:
        return f"JSON-RPC error {reply['error'].get('code')}"
    result = reply.get("result", {})
    if result.get("isError") is False:
        return None
    text = next((c.get("text", "") for c in result.get("content", []) if c.get("type") == "text"), "")
    return f"tool error {text.split(':', 1)[0]}"
