"""The platform's Prometheus metrics, defined once. Names and labels are part of the product contract (SPEC.md).

Several processes (uvicorn workers, tool worker processes, Celery workers) each count their own calls. With
PROMETHEUS_MULTIPROC_DIR set (before the process starts), prometheus_client keeps every process's values in files
there and /metrics adds them up; each gauge says how (`multiprocess_mode`). Without it, each process reports its own.
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterable

import psutil
from prometheus_client import Counter, Gauge, Histogram, multiprocess

REQUESTS = Counter("mcp_requests_total", "Tool calls by tool and outcome.", ["tool", "status"])
REQUEST_DURATION = Histogram(
    "mcp_request_duration_seconds",
    "Time to answer a tool call, guards included.",
    ["tool"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
CONCURRENT = Gauge("mcp_concurrent_requests", "Tool calls in flight.", multiprocess_mode="livesum")
ANALYSIS_DURATION = Histogram(
    "music21_analysis_duration_seconds",
    "Time spent in the music21 work of a call.",
    ["tool"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
AUTH_ATTEMPTS = Counter("music21_auth_attempts_total", "Bearer-token and login attempts by result.", ["result"])
SECURITY_VIOLATIONS = Counter("music21_security_violations_total", "Security events by kind.", ["kind"])
BLOCKED = Counter("music21_blocked_requests_total", "Calls refused by a guard, by reason.", ["reason"])
BREAKER_STATE_CHANGES = Counter(
    "music21_circuit_breaker_state_changes", "Circuit breaker state changes.", ["circuit_name"]
)
FILES_PROCESSED = Counter("music21_files_processed", "Scores imported and corpus works analysed.")
QUEUE_SIZE = Gauge("music21_analysis_queue_size", "Tasks waiting in the Celery queue.", multiprocess_mode="mostrecent")
MEMORY = Gauge("music21_memory_usage_bytes", "Memory of the serving processes.", ["type"], multiprocess_mode="livesum")
CPU = Gauge("music21_cpu_usage_percent", "CPU use of the serving processes.", multiprocess_mode="livesum")
OPEN_FDS = Gauge("music21_open_file_descriptors", "Open file descriptors.", multiprocess_mode="livesum")
# Set at each scrape from the state every process shares (Redis), by whichever process answers it: the latest
# reading is the state, whereas the highest would keep a breaker open for as long as a worker that saw it open is
# not the one Prometheus's connection reaches.
BREAKER_OPEN = Gauge(
    "music21_circuit_breaker_open",
    "1 while a group's breaker is not closed (open, or half-open on a trial call).",
    ["circuit_name"],
    multiprocess_mode="mostrecent",
)
READY = Gauge("music21_ready", "1 if the last readiness check passed.", multiprocess_mode="mostrecent")


def series_initialise(
    *, tools: Iterable[str] = (), groups: Iterable[str] = (), event_kinds: Iterable[str] = ()
) -> None:
    """Create each labelled series at zero, so that dashboards and alerts see 0 rather than no data: the fixed
    labels, and those of the `tools`, guard `groups` and security `event_kinds` given (each app gives its own)."""
    for tool in tools:
        REQUESTS.labels(tool=tool, status="success")
        REQUEST_DURATION.labels(tool=tool)
        ANALYSIS_DURATION.labels(tool=tool)
    for result in ("success", "failure", "invalid_token", "locked_out"):
        AUTH_ATTEMPTS.labels(result=result)
    for reason in ("rate_limit", "busy", "circuit_open", "blocked"):
        BLOCKED.labels(reason=reason)
    for kind in event_kinds:
        SECURITY_VIOLATIONS.labels(kind=kind)
    for group in groups:
        BREAKER_STATE_CHANGES.labels(circuit_name=group)
        BREAKER_OPEN.labels(circuit_name=group)
    for memory_type in ("rss", "vms"):
        MEMORY.labels(type=memory_type)


def process_forget(pid: int) -> None:
    """Take the process `pid`, which has ended, out of the sums of the live gauges (memory, CPU, open files, calls
    in flight) in multiprocess mode. A process that exits cleanly does this itself (apps.security.monitoring); one
    that is killed runs no exit handler, so whoever killed it must, or its last values stay in /metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)


def processes_gone_forget() -> None:
    """Forget every process of PROMETHEUS_MULTIPROC_DIR that has ended without saying so: a Celery pool process
    killed at its hard time limit or by the kernel for memory, a uvicorn worker that crashed. Called at each scrape,
    so that a sum of live gauges is over the processes that are alive."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        pid = int(path.rsplit("_", 1)[1].removesuffix(".db"))
        if not psutil.pid_exists(pid):
            with contextlib.suppress(FileNotFoundError):  # another process of the target forgot it first
                multiprocess.mark_process_dead(pid, directory)
