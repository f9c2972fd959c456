"""The admin dashboard: the last 24 hours of traffic from the audit trail, drawn server-side as SVG, and what needs
attention (open breakers, open data-subject requests, recent security events). Every count links to the filtered
admin list behind it, with the same filters, so that the number and the list agree."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Avg, Count, Q
from django.db.models.functions import TruncHour
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import SafeString

from apps.compliance.display import audited_actions, duration_humane
from apps.compliance.models import AuditEvent, DataSubjectRequest
from apps.security import breakers
from apps.security.models import SecurityEvent
from apps.security.selectors import clients_named

HOURS = 24


def window_start(*, now: datetime | None = None) -> datetime:
    """The start of the dashboard's window: the top of the hour 23 hours ago, so that it holds 24 whole bars."""
    now = now or timezone.now()
    return (now - timedelta(hours=HOURS - 1)).replace(minute=0, second=0, microsecond=0)


def audit_list_url(*, since: datetime, action: str = "", failed: bool = False) -> str:
    """The audit list filtered as a dashboard count is: tool calls (or one tool's) since `since`, optionally only
    those that did not succeed."""
    query: dict[str, str] = {"created_at__gte": since.isoformat()}
    query.update({"action": action} if action else {"kind": "tool"})
    if failed:
        query["result"] = "failed"
    return reverse("admin:compliance_auditevent_changelist") + "?" + urlencode(query)


def traffic_by_hour(*, now: datetime | None = None) -> list[dict[str, Any]]:
    """Tool calls per hour over the last 24 hours: calls, errors (server-side outcomes and refusals alike: anything
    but success), calls per minute, error rate."""
    start = window_start(now=now)
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


def tools_table(*, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every tool (those without calls too), busiest first: calls, calls not successful, mean time, and the links
    to those calls in the audit list."""
    start = window_start(now=now)
    rows = {
        row["action"]: row
        for row in AuditEvent.objects.filter(action__startswith="tool.", created_at__gte=start)
        .values("action")
        .annotate(calls=Count("id"), errors=Count("id", filter=~Q(outcome="success")), mean_ms=Avg("duration_ms"))
    }
    actions = {action for action in audited_actions() if action.startswith("tool.")} | set(rows)
    table = []
    for action in actions:
        row = rows.get(action, {"calls": 0, "errors": 0, "mean_ms": None})
        table.append(
            {
                "tool": action.removeprefix("tool."),
                "calls": row["calls"],
                "errors": row["errors"],
                "mean": duration_humane(row["mean_ms"]),
                "calls_url": audit_list_url(since=start, action=action),
                "errors_url": audit_list_url(since=start, action=action, failed=True),
            }
        )
    return sorted(table, key=lambda row: (-row["calls"], row["tool"]))


def bar_chart(
    values: list[float], *, hours: list[datetime], title: str, unit: str, color: str = "#417690"
) -> SafeString:
    """An SVG bar chart over the hours: a bar per hour (its <title> holds the hour and exact value, on hover and
    for tests), the value axis with its maximum, and a time axis labelled every six hours and at the last bar."""
    left, right, top_pad, bottom = 44, 8, 18, 34
    width, height, gap = 560, 150, 2
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    top = max(values) if values and max(values) > 0 else 1
    bar = (plot_w - gap * len(values)) / max(len(values), 1)
    base = top_pad + plot_h

    def x_of(index: int) -> float:
        return left + index * (bar + gap)

    bars = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{} to {}: {} {}</title></rect>',
        (
            (
                f"{x_of(i):.1f}",
                f"{base - (value / top) * plot_h:.1f}",
                f"{bar:.1f}",
                f"{(value / top) * plot_h:.1f}",
                color,
                f"{hours[i]:%H:00}",
                f"{hours[i] + timedelta(hours=1):%H:00}",
                f"{value:g}",
                unit,
            )
            for i, value in enumerate(values)
        ),
    )
    ticks = sorted({*range(0, len(hours), 6), len(hours) - 1}) if hours else []
    axis = format_html_join(
        "",
        '<line x1="{x}" y1="{y}" x2="{x}" y2="{y2}" stroke="#999"/>'
        '<text class="tick" x="{x}" y="{ty}" font-size="10" text-anchor="middle" fill="#555">{label}</text>',
        (
            {
                "x": f"{x_of(i) + bar / 2:.1f}",
                "y": base,
                "y2": base + 4,
                "ty": base + 14,
                "label": f"{hours[i]:%H:00}",
            }
            for i in ticks
        ),
    )
    zone = f"{hours[0]:%Z}" if hours else "UTC"
    return format_html(
        '<svg class="chart" role="img" aria-label="{title}, {first} to {end} ({zone})" '
        'viewBox="0 0 {w} {h}" width="{w}" height="{h}">'
        '<text x="{left}" y="11" font-size="11" fill="#333">{title}</text>'
        '<text x="{yl}" y="{top_pad}" font-size="10" text-anchor="end" dy="8" fill="#555">{max}</text>'
        '<text x="{yl}" y="{base}" font-size="10" text-anchor="end" fill="#555">0</text>'
        '<line x1="{left}" y1="{base}" x2="{xr}" y2="{base}" stroke="#999"/>'
        "{bars}{axis}"
        '<text class="axis-title" x="{mid}" y="{h}" dy="-2" font-size="10" text-anchor="middle" fill="#555">'
        "hour of the day ({zone}), {first} to {end}</text></svg>",
        title=title,
        first=f"{hours[0]:%Y-%m-%d %H:00}" if hours else "",
        end=f"{hours[-1] + timedelta(hours=1):%Y-%m-%d %H:00}" if hours else "",
        zone=zone,
        w=width,
        h=height,
        left=left,
        yl=left - 4,
        top_pad=top_pad,
        base=base,
        xr=width - right,
        mid=left + plot_w / 2,
        max=f"{top:g}",
        bars=bars,
        axis=axis,
    )


def dashboard_context(user: Any) -> dict[str, Any]:
    """What the admin index shows to `user` (each part only to those allowed to see its records)."""
    now = timezone.now()
    start = window_start(now=now)
    hours = traffic_by_hour(now=now)
    stamps = [h["hour"] for h in hours]
    context: dict[str, Any] = {
        "dashboard": True,
        "window_start": start,
        "calls_24h": sum(h["calls"] for h in hours),
        "errors_24h": sum(h["errors"] for h in hours),
        "tools": tools_table(now=now),
        "open_breakers": [name for name, state in breakers.breaker_states().items() if state["state"] != "closed"],
        "may_see_breakers": user.has_perm("security.manage_circuit_breakers"),
        "may_see_audit": user.has_perm("compliance.view_auditevent"),
        "requests_chart": bar_chart(
            [h["per_minute"] for h in hours], hours=stamps, title="Tool calls per minute, by hour", unit="calls/min"
        ),
        "errors_chart": bar_chart(
            [round(h["error_rate"] * 100, 1) for h in hours],
            hours=stamps,
            title="Calls not successful, % by hour",
            unit="%",
            color="#ba2121",
        ),
    }
    if context["may_see_audit"]:
        context["calls_url"] = audit_list_url(since=start)
        context["errors_url"] = audit_list_url(since=start, failed=True)
    if user.has_perm("compliance.view_datasubjectrequest"):
        open_requests = DataSubjectRequest.objects.filter(status__in=DataSubjectRequest.OPEN)
        requests_url = reverse("admin:compliance_datasubjectrequest_changelist")
        open_query = {"status__in": ",".join(DataSubjectRequest.OPEN)}
        context["open_requests"] = open_requests.count()
        context["open_requests_url"] = requests_url + "?" + urlencode(open_query)
        context["overdue_requests"] = open_requests.filter(due_at__lt=now).count()
        context["overdue_requests_url"] = requests_url + "?" + urlencode({**open_query, "due_at__lt": now.isoformat()})
    if user.has_perm("security.view_securityevent"):
        events = SecurityEvent.objects.filter(created_at__gte=start)
        context["security_events_24h"] = events.count()
        context["security_events_url"] = (
            reverse("admin:security_securityevent_changelist") + "?" + urlencode({"created_at__gte": start.isoformat()})
        )
        recent = list(SecurityEvent.objects.order_by("-created_at")[:8])
        names = {client_id: name for client_id, (name, _) in clients_named(e.client_id for e in recent).items()}
        context["recent_security_events"] = [
            {
                "event": event,
                "client": names.get(event.client_id) or event.client_id[:10],
                "url": reverse("admin:security_securityevent_change", args=[event.pk]),
            }
            for event in recent
        ]
    return context
