"""Operational HTTP endpoints: liveness, readiness, metrics and server statistics."""

from __future__ import annotations

from collections.abc import Callable

from celery import current_app as celery_app  # the project's app (music21_platform.celery), set as current
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core import metrics
from apps.security.monitoring import metrics_allowed
from apps.security.redis import redis_degraded
from apps.security.staff_otp import IsVerifiedStaffOrAdminToken
from apps.tools import monitoring


def health(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Readiness of its dependencies is /health/ready."""
    return JsonResponse({"status": "ok"})


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def _migrations() -> str:
    pending = MigrationExecutor(connection).migration_plan(MigrationExecutor(connection).loader.graph.leaf_nodes())
    if pending:
        raise RuntimeError(f"{len(pending)} migration(s) not applied; run `manage.py migrate`")
    return "ok"


def _cache() -> str:
    cache.set("readiness-probe", "ok", 10)
    if cache.get("readiness-probe") != "ok":
        raise RuntimeError("the cache did not return what was stored")
    return "ok"


BROKER_TIMEOUT = 0.5  # seconds; a probe must answer well within its own timeout (deploy/k8s: 5 s)


def _broker() -> str:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return "ok (no broker: tasks run in process)"
    # Short timeouts of the probe's own: a frozen broker must not hold the probe for the workers' timeouts.
    options = {
        **(celery_app.conf.broker_transport_options or {}),
        "socket_timeout": BROKER_TIMEOUT,
        "socket_connect_timeout": BROKER_TIMEOUT,
    }
    with celery_app.connection_for_write(transport_options=options, connect_timeout=BROKER_TIMEOUT) as conn:
        # One try: kombu sleeps `interval_start` (2 s) before each retry, whatever `timeout` says.
        conn.ensure_connection(max_retries=0, timeout=BROKER_TIMEOUT)
    return "ok"


CHECKS: dict[str, Callable[[], str]] = {
    "database": _database,
    "migrations": _migrations,
    "cache": _cache,
    "broker": _broker,
}
# Without these no call can be served; without the others (Redis: the cache, the broker) calls are still served,
# with the guards on per-process state and no corpus jobs, and the server is ready but degraded.
ESSENTIAL = ("database", "migrations")
CONSEQUENCES = {
    "cache": "the cache (Redis) is unreachable: rate limits, breakers and the block list run on per-process state",
    "broker": "the Celery broker is unreachable: corpus jobs cannot start",
}


def ready(request: HttpRequest) -> JsonResponse:
    """Readiness: 503 when a call cannot be served (the database down or not migrated); else 200, `ready`, or
    `degraded` naming in `down` what is unreachable (Redis: the cache, the broker) while calls are still served."""
    checks: dict[str, str] = {}
    for name, check in CHECKS.items():
        if name == "migrations" and not checks["database"].startswith("ok"):
            # It would wait for a connection as long again (DB_POOL_TIMEOUT), and the probe would pass its own
            # timeout (deploy/k8s: 5 s) with the database down.
            checks[name] = "not checked: the database does not answer"
            continue
        try:
            checks[name] = check()
        except Exception as exc:  # a readiness probe reports failures, it does not raise them
            checks[name] = f"error: {type(exc).__name__}: {exc}"[:300]
    down = [name for name, value in checks.items() if not value.startswith("ok")]
    serving = not any(name in down for name in ESSENTIAL)
    metrics.READY.set(1 if serving else 0)
    warnings = [CONSEQUENCES[name] for name in down if name in CONSEQUENCES]
    if redis_degraded() and "cache" not in down:
        down.append("redis")
        warnings.append("Redis is unreachable: rate limits and circuit breakers run on per-process state")
    status = "unavailable" if not serving else "degraded" if down else "ready"
    return JsonResponse(
        {"status": status, "checks": checks, "down": down, "warnings": warnings}, status=200 if serving else 503
    )


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text for loopback, METRICS_ALLOWED_NETWORKS, or a bearer of METRICS_TOKEN."""
    if not settings.METRICS_ENABLED:
        return HttpResponse("Metrics are disabled (METRICS_ENABLED=false).\n", status=404, content_type="text/plain")
    if not metrics_allowed(ip=request.META.get("REMOTE_ADDR"), authorization=request.headers.get("Authorization", "")):
        return HttpResponse(
            "Metrics are readable from the allowed networks or with the metrics token.\n",
            status=403,
            content_type="text/plain",
        )
    return HttpResponse(monitoring.metrics_text(), content_type=CONTENT_TYPE_LATEST)


class ServerStatsView(APIView):
    """GET /server_stats for staff verified by their second factor, or a music21:admin token."""

    permission_classes = [IsVerifiedStaffOrAdminToken]

    def get(self, request: Request) -> Response:
        return Response(monitoring.server_stats())
