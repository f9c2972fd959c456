"""What /metrics and /server_stats report: the metrics of every process, and a few values read when asked."""

from __future__ import annotations

import functools
import logging
import os
import time
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from redis.exceptions import RedisError

from apps.core import metrics
from apps.core.redis import FailFastRedis, fail_fast_redis
from apps.security import breakers
from apps.security.monitoring import STARTED, process_memory_rss, process_metrics_update
from apps.tools.models import Score
from apps.tools.results import results_stats
from apps.tools.services.cache import parsed_scores

logger = logging.getLogger(__name__)


def queue_size() -> int | None:
    """Tasks waiting in the Celery queue (Redis broker), or None without one."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return 0
    if urlsplit(settings.CELERY_BROKER_URL).scheme not in ("redis", "rediss"):
        return None
    # With the product's short timeouts and its record of the server being down: a frozen broker must not hold
    # up a scrape or /server_stats (kombu's own connection waits its socket timeout, seconds).
    broker = _broker(settings.CELERY_BROKER_URL)
    try:
        return int(broker.llen(settings.CELERY_TASK_DEFAULT_QUEUE))
    except RedisError as exc:
        if not broker.outage.down:  # an unreachable server is logged once by its outage record, not every scrape
            logger.warning("cannot read the Celery queue length (%s)", exc)
        return None


@functools.cache
def _broker(url: str) -> FailFastRedis:
    return fail_fast_redis(url)


def scrape_values_update() -> None:
    """Values that are read, not counted: breaker states (shared in Redis), the queue, this process."""
    for group, state in breakers.breaker_states().items():
        # Half-open is still open for the alert: between trial calls that fail, a breaker is half-open for as long
        # as each trial waits on the failing dependency.
        metrics.BREAKER_OPEN.labels(circuit_name=group).set(0 if state["state"] == "closed" else 1)
    waiting = queue_size()
    # Unknown (NaN) while the queue cannot be read: the length read before an outage would pass for the present.
    metrics.QUEUE_SIZE.set(float("nan") if waiting is None else waiting)
    process_metrics_update()


def metrics_text() -> bytes:
    """The Prometheus exposition of every process (multiprocess mode) or of this one."""
    scrape_values_update()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics.processes_gone_forget()
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def server_stats() -> dict[str, Any]:
    """The state of this server for operators: uptime, calls, scores held, cache use, breakers, queue."""
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
        "analysis_results": results_stats(),
        "breakers": breakers.breaker_states(),
        "queue_depth": queue_size(),
        "memory_rss_bytes": process_memory_rss(),
    }
