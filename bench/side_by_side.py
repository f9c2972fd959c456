"""The analysis tools of this platform and of another music21 MCP server, side by side in the same minutes: the
way to check issue 22's target (each analysis tool at most half the public music21 MCP server's time) in whatever
hour the machine is in, as its speed varies up to threefold from hour to hour. Not part of `make bench`, which does
not run the other server.

The other server must already be serving Streamable HTTP with the public server's tools (brightlikethelight's
music21-mcp-server: `import_score` with `score_id`, `source`, `source_type`; each analysis tool with `score_id`);
docs/performance.md says how it was installed and started for the figures there. This platform is served by
uvicorn as `bench/mcp_analysis.py` serves it (tool processes, one per core, remembered answers on; or with
`--tool-processes 0`, tools in threads as `make run` serves them), on the database and Redis that DATABASE_URL
and REDIS_URL name (without them, SQLite and the process's memory, as `make run` has them).

The same client (the Python SDK's `ClientSession`, one session per server, in this process) calls the two servers
in turn, call by call, each tool with its default arguments on each side:

- warm: bach/bwv66.6 asked again and again;
- cold: the first analysis of a chorale just imported (the import untimed), a new chorale for each call, the same
  chorales on both sides.

Usage: python bench/side_by_side.py --other http://127.0.0.1:8801/mcp/ [--warm 30] [--cold 15] [--tool-processes N]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Timing, lean_client_heap, setup_django, timed_call

TOOLS = ("key_analysis", "chord_analysis", "harmony_analysis", "voice_leading_analysis", "pattern_recognition")
SIDES = ("other", "platform")


def run(other_url: str, *, warm: int, cold: int, tool_processes: int) -> str:
    from apps.tools.models import AnalysisResult
    from bench.analysis import cold_chorales
    from bench.mcp_roundtrip import bench_token, uvicorn_serving

    token = bench_token("bench-side-by-side")
    # A cold call must find no remembered answer (answers on corpus works are shared by everyone who imported them).
    AnalysisResult.objects.filter(shared=True).delete()
    fresh = cold_chorales(cold * len(TOOLS))
    with uvicorn_serving({"TOOL_WORKER_PROCESSES": str(tool_processes)}) as base, lean_client_heap():
        found = anyio.run(_measured, other_url, f"{base}/mcp", token, fresh, warm, cold)
    lines = [
        f"\n### Side by side with {other_url} (Python SDK client, default arguments, calls alternating)\n",
        "| tool | other warm p50 / p99 ms | platform warm p50 / p99 ms | ratio | "
        "other cold p50 / p99 ms | platform cold p50 / p99 ms | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for tool, timings in found.items():
        cells = []
        for mode in ("warm", "cold"):
            theirs, ours = timings[mode]["other"], timings[mode]["platform"]
            cells += [
                f"{theirs.p50 * 1000:.1f} / {theirs.p99 * 1000:.1f}",
                f"{ours.p50 * 1000:.1f} / {ours.p99 * 1000:.1f}",
                f"{ours.p50 / theirs.p50:.2f} / {ours.p99 / theirs.p99:.2f}",
            ]
        lines.append(f"| {tool} | {' | '.join(cells)} |")
    lines.append("\n(ratio = platform / other, p50 / p99; the target is at most 0.5)")
    return "\n".join(lines)


async def _measured(
    other_url: str, platform_url: str, token: str, fresh: Any, warm: int, cold: int
) -> dict[str, dict[str, dict[str, Timing]]]:
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    run_id = uuid.uuid4().hex[:8]  # the other server keeps its scores in memory between runs: new ids each time
    names = itertools.count()
    async with contextlib.AsyncExitStack() as stack:
        sessions = {}
        for side, url, headers in (
            ("other", other_url, {}),
            ("platform", platform_url, {"Authorization": f"Bearer {token}"}),
        ):
            http = await stack.enter_async_context(httpx2.AsyncClient(headers=headers, timeout=120))
            read_stream, write_stream = await stack.enter_async_context(streamable_http_client(url, http_client=http))
            session = await stack.enter_async_context(ClientSession(read_stream, write_stream))
            await session.initialize()
            sessions[side] = session

        async def call(side: str, tool: str, arguments: dict[str, Any]) -> float:
            result, elapsed = await timed_call(sessions[side], tool, arguments)
            text = result.content[0].text if result.content and hasattr(result.content[0], "text") else ""
            # The public server answers its errors as a successful result with "status": "error" in the text.
            if result.is_error or '"status": "error"' in text[:300]:
                raise RuntimeError(f"{side}: {tool} failed: {text[:300]}")
            return elapsed

        chorale = f"chorale-{run_id}"
        for side in SIDES:
            await call(side, "import_score", {"score_id": chorale, "source": "bach/bwv66.6", "source_type": "corpus"})
        found: dict[str, dict[str, dict[str, Timing]]] = {}
        for tool in TOOLS:
            for side in SIDES:
                for _ in range(3):  # each side's first calls: imports, caches, remembered answers
                    await call(side, tool, {"score_id": chorale})
            warm_times: dict[str, list[float]] = {side: [] for side in SIDES}
            for _ in range(warm):
                for side in SIDES:
                    warm_times[side].append(await call(side, tool, {"score_id": chorale}))
            cold_times: dict[str, list[float]] = {side: [] for side in SIDES}
            for _ in range(cold):
                source = f"bach/{Path(next(fresh)).stem}"  # its corpus path, as a client names it
                for side in SIDES:
                    score_id = f"fresh-{run_id}-{next(names)}"
                    await call(side, "import_score", {"score_id": score_id, "source": source, "source_type": "corpus"})
                    cold_times[side].append(await call(side, tool, {"score_id": score_id}))
            found[tool] = {
                "warm": {side: Timing(warm_times[side]) for side in SIDES},
                "cold": {side: Timing(cold_times[side]) for side in SIDES},
            }
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--other", required=True, help="the other server's Streamable HTTP URL")
    parser.add_argument("--warm", type=int, default=30, help="warm calls per tool and side")
    parser.add_argument("--cold", type=int, default=15, help="cold calls (new chorales) per tool and side")
    parser.add_argument(
        "--tool-processes",
        type=int,
        default=os.cpu_count() or 2,
        help="TOOL_WORKER_PROCESSES of the platform's server: one per core, as deployed (the default), or 0 for "
        "tools in threads of the serving process, as `make run` serves them",
    )
    args = parser.parse_args()
    setup_django()
    print(run(args.other, warm=args.warm, cold=args.cold, tool_processes=args.tool_processes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
