"""The Celery application. Without a broker (`REDIS_URL` unset) tasks run eagerly in the calling process."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_process_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "music21_platform.settings")

app = Celery("music21_platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _serve_worker_metrics(**kwargs: object) -> None:
    """A worker has no web server: with WORKER_METRICS_PORT set it serves its own /metrics (every pool process's
    values when PROMETHEUS_MULTIPROC_DIR is set)."""
    from django.conf import settings

    port = settings.WORKER_METRICS_PORT
    if not port:
        return
    from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    from apps.core.metrics import processes_gone_forget

    class _ForgetTheGone:
        """Registered before the files are read: a pool process killed at its time limit, or by the kernel, ran
        no exit handler, and its memory would stay in the sums."""

        def collect(self) -> list[object]:
            processes_gone_forget()
            return []

    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        registry.register(_ForgetTheGone())  # type: ignore[arg-type]
        MultiProcessCollector(registry)
    start_http_server(port, registry=registry)


@worker_process_init.connect
def _pool_process_start(**kwargs: object) -> None:
    """Each pool process analyses scores all day: the same collector settings as the web processes, and its own
    memory, CPU and open files in the worker's /metrics (the thread of the process it was forked from did not
    survive the fork)."""
    from apps.core.runtime import gc_tune
    from apps.security.monitoring import process_metrics_start

    gc_tune()
    process_metrics_start()


@worker_process_shutdown.connect
def _pool_process_end(**kwargs: object) -> None:
    """A pool process leaves with os._exit, which runs no atexit handler: take it out of the sums itself."""
    from apps.core.metrics import process_forget

    process_forget(os.getpid())
