"""The serving processes' own metrics (memory, CPU, open files), and who may read /metrics."""

from __future__ import annotations

import atexit
import hmac
import ipaddress
import logging
import os
import threading
import time

import psutil
from django.conf import settings
from prometheus_client import multiprocess

from apps.core import metrics

logger = logging.getLogger(__name__)

STARTED = time.time()
PROCESS_METRICS_INTERVAL = 10.0
_process = psutil.Process()


def process_metrics_update() -> None:
    """This process's memory, CPU and open files (each process reports its own; /metrics adds them up)."""
    with _process.oneshot():
        memory = _process.memory_info()
        metrics.MEMORY.labels(type="rss").set(memory.rss)
        metrics.MEMORY.labels(type="vms").set(memory.vms)
        metrics.CPU.set(_process.cpu_percent(interval=None))
        metrics.OPEN_FDS.set(_process.num_fds())


def _process_metrics_loop() -> None:
    while True:
        try:
            process_metrics_update()
        except Exception:  # never let a metrics thread die on a transient /proc error
            logger.debug("process metrics update failed", exc_info=True)
        time.sleep(PROCESS_METRICS_INTERVAL)


_started_for: list[int] = []


def process_metrics_start() -> None:
    """Start this process's metrics thread once (per pid: a forked worker starts its own). In multiprocess mode,
    a process that exits cleanly removes its live gauges from the sums; one that is killed leaves them until its
    parent forgets it (a tool process's serving process does: apps.tools.runner) or the directory is emptied at the
    next start (the container entrypoint and the systemd units do)."""
    if not settings.METRICS_ENABLED or os.getpid() in _started_for:
        return
    _started_for.append(os.getpid())
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        atexit.register(multiprocess.mark_process_dead, os.getpid())
    threading.Thread(target=_process_metrics_loop, name="process-metrics", daemon=True).start()


def metrics_allowed(*, ip: str | None, authorization: str) -> bool:
    """METRICS_ALLOWED_NETWORKS (loopback unless set otherwise) may read /metrics; anyone else needs METRICS_TOKEN as
    a bearer."""
    token = settings.METRICS_TOKEN
    if token and authorization.startswith("Bearer "):
        return hmac.compare_digest(authorization.removeprefix("Bearer ").strip(), token)
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return False
    return any(address in network for network in settings.METRICS_ALLOWED_NETWORKS)


def process_memory_rss() -> int:
    """This process's resident memory, in bytes."""
    return int(_process.memory_info().rss)
