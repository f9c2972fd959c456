"""`make bench`: every benchmark, one table of ratios measured side by side in the same run.

Usage: python bench/run.py [--repeat N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import setup_django, table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=30, help="timed calls per benchmark and side")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each throughput row")
    args = parser.parse_args()
    setup_django()
    from bench import mcp_roundtrip, overhead

    started = time.perf_counter()
    rows = overhead.run(repeat=args.repeat)
    rows += mcp_roundtrip.run(repeat=args.repeat)
    print(table(rows))
    elapsed = time.perf_counter() - started
    print(f"\n(total {elapsed:.1f} s; ratio = platform / direct music21, same process, same score)")
    from bench import audit_admin, corpus_scale, memory, scale

    print(scale.run(seconds=args.seconds))
    print(corpus_scale.run())  # with REDIS_URL only: real Celery worker processes
    memory.run()

    audit_admin.run()  # PostgreSQL only: a scratch database with a million audit events
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
