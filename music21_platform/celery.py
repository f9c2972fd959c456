"""The Celery application. Without a broker (`REDIS_URL` unset) tasks run eagerly in the calling process."""

from __future__ import annotations

import os
import threading
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_process_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "music21_platform.settings")

app = Celery("music21_platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _serve_worker_metrics(**kwargs: object) -> None:
    """A worker has no web server: with WORKER_METRICS_PORT set it serves its own /metrics (every pool process's
    values when PROMETHEUS_MULTIPROC_DIR is set), to whom the web processes' /metrics answers: loopback,
    METRICS_ALLOWED_NETWORKS, or a bearer of METRICS_TOKEN; anyone else gets 403."""
    from django.conf import settings

    port = settings.WORKER_METRICS_PORT
    if not port:
        return
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app
    from prometheus_client.multiprocess import MultiProcessCollector

    from apps.core.metrics import processes_gone_forget
    from apps.security.monitoring import metrics_allowed

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
    exposition = make_wsgi_app(registry)

    def guarded(environ: dict[str, Any], start_response: Any) -> Any:
        if metrics_allowed(ip=environ.get("REMOTE_ADDR"), authorization=environ.get("HTTP_AUTHORIZATION", "")):
            return exposition(environ, start_response)
        start_response("403 Forbidden", [("Content-Type", "text/plain")])
        return [b"Metrics are readable from the allowed networks or with the metrics token.\n"]

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True  # a scraper that hangs holds no other scrape, nor the worker's exit

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # not a line on the worker's output per scrape

    server = make_server("", port, guarded, server_class=Server, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()


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
