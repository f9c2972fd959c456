"""The analysis tools as a client meets them: each with its default arguments over `/mcp` with the Python SDK's
client (its own CPU included), against a uvicorn process of the platform as deployed (remembered answers on).

- warm: bach/bwv66.6 asked again and again (after the first call, the remembered answer);
- cold: the first analysis of a chorale the server has just imported and never analysed (the import, over MCP
  too, is not timed), each chorale used once: four-part chorales of about bwv66.6's size, as in the service's
  cold rows.

These are the figures to set beside the public music21 MCP server's (issue 22's anchor, measured with the same
client on the 2-core test machine, not run here): the targets are half its p50."""

from __future__ import annotations

import itertools
import os
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run alone: python bench/mcp_analysis.py

from bench.analysis import TARGET_MS, cold_chorales
from bench.harness import Timing, lean_client_heap, timed_call
from bench.mcp_roundtrip import bench_token, uvicorn_serving

TOOLS = {  # the targets' names (bench.analysis.TARGET_MS) and each tool's call with its default arguments
    "key_analysis (all profiles)": "key_analysis",
    "chord_analysis": "chord_analysis",
    "harmony_analysis (roman)": "harmony_analysis",
    "voice_leading_analysis": "voice_leading_analysis",
    "pattern_recognition": "pattern_recognition",
}


def run(repeat: int = 20, cold: int = 15) -> str:
    """The table of warm and cold p50 and p99 per tool, with the targets, and how much of a cold call the
    platform's own path took (its audit events' `duration_ms`: from the call's start in `invoke_tool` to its audit
    commit; the rest is the HTTP transport, the SDK on both sides and the client's CPU)."""
    from django.utils import timezone

    from apps.tools.models import AnalysisResult

    token = bench_token("bench-mcp-analysis")
    # A cold call must find no remembered answer: answers on a corpus work are shared by everyone who imported it,
    # so another user's earlier run would answer it. They are a cache; dropping them loses nothing.
    AnalysisResult.objects.filter(shared=True).delete()
    # As deployed: tool calls in tool processes, as many as the machine has cores for one uvicorn worker
    # (deploy/README.md), not in threads of the serving process (development's default), where a call's garbage is
    # collected in its thread while the event loop may wait for the GIL to send the answer.
    deployed = {"TOOL_WORKER_PROCESSES": str(os.cpu_count() or 2)}
    since = timezone.now()
    fresh = cold_chorales(cold * len(TOOLS))
    with uvicorn_serving(deployed) as base, lean_client_heap():
        found = anyio.run(_measured, base, token, fresh, repeat, cold)
    lines = [
        "\n### Analysis tools over MCP (Python SDK client, default arguments, remembered answers on)\n",
        "| tool | target ms | warm p50 / p99 ms | cold p50 / p99 ms | cold, in the platform's path p50 ms | |",
        "|---|---|---|---|---|---|",
    ]
    for name, (warm, first) in found.items():
        limit = TARGET_MS[name]
        met = max(warm.p50, warm.p99, first.p50, first.p99) * 1000 <= limit
        lines.append(
            f"| {name} | {limit:.0f} | {warm.p50 * 1000:.1f} / {warm.p99 * 1000:.1f} | "
            f"{first.p50 * 1000:.1f} / {first.p99 * 1000:.1f} | {_in_the_platform(TOOLS[name], since):.1f} | "
            f"{'met' if met else '**not met**'} |"
        )
    return "\n".join(lines)


def _in_the_platform(tool: str, since: Any) -> float:
    """The median `duration_ms` of the audit events of `tool`'s cold calls (on the fresh chorales) since `since`."""
    from apps.compliance.models import AuditEvent

    events = AuditEvent.objects.filter(action=f"tool.{tool}", created_at__gte=since, target__startswith="score:fresh-")
    return statistics.median(events.values_list("duration_ms", flat=True))


async def _measured(
    base: str, token: str, fresh: Iterator[str], repeat: int, cold: int
) -> dict[str, tuple[Timing, Timing]]:
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    names = itertools.count()
    found: dict[str, tuple[Timing, Timing]] = {}
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=120) as http,
        streamable_http_client(f"{base}/mcp", http_client=http) as (read_stream, write_stream),
        ClientSession(read_stream, write_stream) as session,
    ):
        await session.initialize()

        async def call(tool: str, arguments: dict[str, Any]) -> float:
            result, elapsed = await timed_call(session, tool, arguments)
            if result.is_error:
                raise RuntimeError(f"{tool} failed: {result.content}")
            return elapsed

        await call("import_score", {"score_id": "chorale", "source": "bach/bwv66.6", "source_type": "corpus"})
        for name, tool in TOOLS.items():
            for _ in range(3):  # the first is cold; then remembered
                await call(tool, {"score_id": "chorale"})
            warm = [await call(tool, {"score_id": "chorale"}) for _ in range(repeat)]
            first = []
            for _ in range(cold):
                score_id = f"fresh-{next(names)}"
                source = f"bach/{Path(next(fresh)).stem}"  # its corpus path, as a client names it
                await call("import_score", {"score_id": score_id, "source": source, "source_type": "corpus"})
                first.append(await call(tool, {"score_id": score_id}))
            found[name] = (Timing(warm), Timing(first))
    return found


if __name__ == "__main__":
    from bench.harness import setup_django

    setup_django()
    print(run())
