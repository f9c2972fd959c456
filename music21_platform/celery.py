"""The Celery application. Without a broker (`REDIS_URL` unset) tasks run eagerly in the calling process."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_init, worker_process_init

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

    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    start_http_server(port, registry=registry)


@worker_process_init.connect
def _tune_gc(**kwargs: object) -> None:
    """Each pool process analyses scores all day: the same collector settings as the web processes."""
    from apps.core.runtime import gc_tune

    gc_tune()
