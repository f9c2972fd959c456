"""Operational HTTP endpoints: liveness, readiness, metrics and server statistics."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.security import metrics, monitoring
from apps.security.permissions import IsStaffOrAdminToken
from apps.security.redis import redis_degraded


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


def _broker() -> str:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return "ok (no broker: tasks run in process)"
    from music21_platform.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=1)
    return "ok"


CHECKS: dict[str, Callable[[], str]] = {
    "database": _database,
    "migrations": _migrations,
    "cache": _cache,
    "broker": _broker,
}


def ready(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 when the database (migrated), cache and broker all answer, else 503 naming what failed."""
    checks: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            checks[name] = check()
        except Exception as exc:  # a readiness probe reports failures, it does not raise them
            checks[name] = f"error: {type(exc).__name__}: {exc}"[:300]
    healthy = all(value.startswith("ok") for value in checks.values())
    metrics.READY.set(1 if healthy else 0)
    warnings = []
    if redis_degraded():
        warnings.append("Redis is unreachable: rate limits and circuit breakers run on per-process state")
    return JsonResponse(
        {"status": "ready" if healthy else "unavailable", "checks": checks, "warnings": warnings},
        status=200 if healthy else 503,
    )


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text for loopback, METRICS_ALLOWED_NETWORKS, or a bearer of METRICS_TOKEN."""
    if not settings.METRICS_ENABLED:
        return HttpResponse("Metrics are disabled (METRICS_ENABLED=false).\n", status=404, content_type="text/plain")
    if not monitoring.metrics_allowed(
        ip=request.META.get("REMOTE_ADDR"), authorization=request.headers.get("Authorization", "")
    ):
        return HttpResponse(
            "Metrics are readable from the allowed networks or with the metrics token.\n",
            status=403,
            content_type="text/plain",
        )
    return HttpResponse(monitoring.metrics_text(), content_type=CONTENT_TYPE_LATEST)


class ServerStatsView(APIView):
    """GET /server_stats for staff or a music21:admin token."""

    permission_classes = [IsStaffOrAdminToken]

    def get(self, request: Request) -> Response:
        return Response(monitoring.server_stats())
