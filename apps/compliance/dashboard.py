"""The admin dashboard: the last 24 hours of traffic from the audit trail, drawn server-side as SVG, and what needs
attention (open breakers, open data-subject requests, recent security events)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from apps.compliance.models import AuditEvent, DataSubjectRequest
from apps.security import breakers
from apps.security.models import SecurityEvent

HOURS = 24


def traffic_by_hour(*, now: Any = None) -> list[dict[str, Any]]:
    """Tool calls per hour over the last 24 hours: calls, errors (server-side outcomes and refusals alike: anything
    but success), calls per minute, error rate."""
    now = now or timezone.now()
    start = (now - timedelta(hours=HOURS - 1)).replace(minute=0, second=0, microsecond=0)
    rows = (
        AuditEvent.objects.filter(action__startswith="tool.", created_at__gte=start)
        .annotate(hour=TruncHour("created_at"))
        .values("hour")
        .annotate(calls=Count("id"), errors=Count("id", filter=~Q(outcome="success")))
    )
    found = {row["hour"]: row for row in rows}
    hours = []
    for index in range(HOURS):
        hour = start + timedelta(hours=index)
        row = found.get(hour, {"calls": 0, "errors": 0})
        calls, errors = row["calls"], row["errors"]
        hours.append(
            {
                "hour": hour,
                "calls": calls,
                "errors": errors,
                "per_minute": round(calls / 60, 2),
                "error_rate": round(errors / calls, 4) if calls else 0.0,
            }
        )
    return hours


def top_tools(*, now: Any = None, limit: int = 8) -> list[dict[str, Any]]:
    now = now or timezone.now()
    rows = (
        AuditEvent.objects.filter(action__startswith="tool.", created_at__gte=now - timedelta(hours=HOURS))
        .values("action")
        .annotate(calls=Count("id"), total_ms=Sum("duration_ms"))
        .order_by("-calls")[:limit]
    )
    return [
        {"tool": row["action"].removeprefix("tool."), "calls": row["calls"], "seconds": (row["total_ms"] or 0) / 1000}
        for row in rows
    ]


def bar_chart(values: list[float], *, labels: list[str], title: str, color: str = "#417690") -> SafeString:
    """A small SVG bar chart; each bar has a <title> with its exact value (hover, and tests read it)."""
    width, height, gap = 480, 120, 2
    top = max(values) if values and max(values) > 0 else 1
    bar = (width - gap * len(values)) / max(len(values), 1)
    bars = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}: {}</title></rect>',
        (
            (
                f"{i * (bar + gap):.1f}",
                f"{height - (value / top) * (height - 14):.1f}",
                f"{bar:.1f}",
                f"{(value / top) * (height - 14):.1f}",
                color,
                labels[i],
                f"{value:g}",
            )
            for i, value in enumerate(values)
        ),
    )
    return format_html(
        '<svg class="chart" role="img" aria-label="{}" viewBox="0 0 {} {}" width="{}" height="{}">'
        '<text x="0" y="10" font-size="10" fill="#666">{} (max {})</text>{}</svg>',
        title,
        width,
        height,
        width,
        height,
        title,
        f"{top:g}",
        bars,
    )


def dashboard_context(user: Any) -> dict[str, Any]:
    """What the admin index shows to `user` (each part only to those allowed to see its records)."""
    hours = traffic_by_hour()
    labels = [f"{h['hour']:%H:00}" for h in hours]
    context: dict[str, Any] = {
        "dashboard": True,
        "calls_24h": sum(h["calls"] for h in hours),
        "errors_24h": sum(h["errors"] for h in hours),
        "requests_chart": bar_chart([h["per_minute"] for h in hours], labels=labels, title="Calls per minute, by hour"),
        "errors_chart": bar_chart(
            [round(h["error_rate"] * 100, 1) for h in hours], labels=labels, title="Error rate %", color="#ba2121"
        ),
        "top_tools": top_tools(),
        "open_breakers": [name for name, state in breakers.breaker_states().items() if state["state"] != "closed"],
    }
    if user.has_perm("compliance.view_datasubjectrequest"):
        open_requests = DataSubjectRequest.objects.filter(status__in=DataSubjectRequest.OPEN)
        context["open_requests"] = open_requests.count()
        context["overdue_requests"] = open_requests.filter(due_at__lt=timezone.now()).count()
    if user.has_perm("security.view_securityevent"):
        context["recent_security_events"] = list(SecurityEvent.objects.order_by("-created_at")[:8])
    return context
