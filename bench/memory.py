"""Memory of a process holding MAX_SCORES_IN_MEMORY parsed scores, and proof that the bound holds: import three
times as many scores as the bound allows through the invocation path and watch resident memory.

The scores are the first MAX_SCORES_IN_MEMORY Bach works of the corpus, imported three times over under new ids
(new rows, new cache entries): the works held at any moment then weigh the same, so any growth past the bound is
the process's, not a run of longer chorales. Runs in a child process of its own (a fresh interpreter, its own
SQLite file) so that nothing else is in memory.
"""

from __future__ import annotations

import gc
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(bound: int) -> None:
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import psutil
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from music21 import corpus

    from apps.core.runtime import garbage_after_call, gc_tune
    from apps.tools.invocation import Caller, invoke_tool
    from apps.tools.services.cache import parsed_scores

    call_command("migrate", verbosity=0)
    gc_tune()  # as every serving process does once started
    user = get_user_model().objects.create_user("memory-bench")
    caller = Caller.operator(user)
    chorales = [str(p) for p in corpus.getComposer("bach") if "bwv" in str(p)][:bound] * 3
    process = psutil.Process()
    samples = []
    for index, path in enumerate(chorales, start=1):
        relative = "bach/" + Path(path).name
        try:
            invoke_tool(
                "import_score", {"score_id": f"s{index}", "source": relative, "source_type": "corpus"}, caller=caller
            )
        except Exception:  # noqa: S112 - a work music21 cannot read as one score is skipped
            continue
        garbage_after_call()  # as the process that ran the call does once it is answered
        if index % max(1, bound // 4) == 0:
            gc.collect()
            samples.append((index, len(parsed_scores), process.memory_info().rss))
    at_bound = next((rss for n, _, rss in samples if n >= bound), samples[0][2])
    turned_over = next((rss for n, _, rss in samples if n > bound), at_bound)  # the first evictions
    last = samples[-1][2]
    print(f"\n### Memory with MAX_SCORES_IN_MEMORY={bound}\n")
    print("| scores imported | held in the cache | RSS MiB |\n|---|---|---|")
    for n, held, rss in samples:
        print(f"| {n} | {held} | {rss / 2**20:.0f} |")
    print(
        f"\nRSS at the bound {at_bound / 2**20:.0f} MiB, after {samples[-1][0]} imports {last / 2**20:.0f} MiB: "
        f"{(last - at_bound) / at_bound * 100:+.1f}% (the bound holds when this stays within 10%); from the first "
        f"evictions on {(last - turned_over) / turned_over * 100:+.1f}%."
    )


def run(bound: int = 60) -> float:
    """Print the memory table; return RSS growth past the bound, in percent."""
    database = Path(tempfile.mkdtemp()) / "memory.sqlite3"
    child_run = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, __file__, "--child", str(bound)],
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "music21_platform.settings",
            "DATABASE_URL": f"sqlite:///{database}",
            "MAX_SCORES_IN_MEMORY": str(bound),
            "RATE_LIMIT_PER_MINUTE": "100000000",
            "RATE_LIMIT_BURST": "100000000",
            "AUDIT_SEAL_INTERVAL": "0",
            "LOG_LEVEL": "WARNING",
        },
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    print(child_run.stdout, end="")
    growth = re.search(r"imports \d+ MiB: ([+-][\d.]+)%", child_run.stdout)
    if growth is None:
        raise RuntimeError("the memory benchmark printed no growth figure")
    return float(growth.group(1))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(int(sys.argv[2]))
    else:
        run()
