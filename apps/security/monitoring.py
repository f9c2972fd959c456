"""What /metrics and /server_stats report: the metrics of every process, and a few read at scrape time."""

from __future__ import annotations

import atexit
import hmac
import ipaddress
import logging
import os
import threading
import time
from typing import Any

import psutil
from django.conf import settings
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.multiprocess import MultiProcessCollector

from apps.core import metrics
from apps.security import breakers

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
    a process that exits cleanly removes its live gauges from the sums; one that is killed leaves them until the
    directory is emptied at the next start (the container entrypoint and the systemd units do)."""
    if not settings.METRICS_ENABLED or os.getpid() in _started_for:
        return
    _started_for.append(os.getpid())
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        atexit.register(multiprocess.mark_process_dead, os.getpid())
    threading.Thread(target=_process_metrics_loop, name="process-metrics", daemon=True).start()


def queue_size() -> int | None:
    """Tasks waiting in the Celery queue (Redis broker), or None without one."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return 0
    from music21_platform.celery import app

    try:
        with app.connection_for_read() as conn:
            return conn.default_channel.client.llen(app.conf.task_default_queue)
    except Exception:
        logger.warning("cannot read the Celery queue length", exc_info=True)
        return None


def scrape_values_update() -> None:
    """Values that are read, not counted: breaker states (shared in Redis), the queue, this process."""
    for group, state in breakers.breaker_states().items():
        metrics.BREAKER_OPEN.labels(circuit_name=group).set(1 if state["state"] == "open" else 0)
    waiting = queue_size()
    if waiting is not None:
        metrics.QUEUE_SIZE.set(waiting)
    process_metrics_update()


def metrics_text() -> bytes:
    """The Prometheus exposition of every process (multiprocess mode) or of this one."""
    scrape_values_update()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def metrics_allowed(*, ip: str | None, authorization: str) -> bool:
    """Loopback and METRICS_ALLOWED_NETWORKS may read /metrics; anyone else needs METRICS_TOKEN as a bearer."""
    token = settings.METRICS_TOKEN
    if token and authorization.startswith("Bearer "):
        return hmac.compare_digest(authorization.removeprefix("Bearer ").strip(), token)
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return False
    return any(address in network for network in settings.METRICS_ALLOWED_NETWORKS)


def server_stats() -> dict[str, Any]:
    """The state of this server for operators: uptime, calls, scores held, cache use, breakers, queue."""
    from apps.tools.models import Score
    from apps.tools.services.cache import parsed_scores

    calls: dict[str, float] = {}
    for metric in metrics.REQUESTS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                status = sample.labels["status"]
                calls[status] = calls.get(status, 0) + sample.value
    process_metrics_update()
    stats = parsed_scores.stats
    return {
        "status": "success",
        "uptime_seconds": round(time.time() - STARTED, 1),
        "process": os.getpid(),
        "requests": {"total": int(sum(calls.values())), "by_status": {k: int(v) for k, v in sorted(calls.items())}},
        "scores_held": Score.objects.count(),
        "parsed_score_cache": {
            "entries": len(parsed_scores),
            "capacity": parsed_scores.capacity,
            "hits": stats.hits,
            "misses": stats.misses,
            "evictions": stats.evictions,
        },
        "breakers": breakers.breaker_states(),
        "queue_depth": queue_size(),
        "memory_rss_bytes": _process.memory_info().rss,
    }
