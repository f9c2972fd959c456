"""Compliance reports built from the stored records over a date range: `soc2` and `gdpr`."""

from __future__ import annotations

import statistics
from datetime import date, datetime, time, timedelta
from typing import Any

from auditlog.models import LogEntry
from django.db.models import Count, QuerySet
from django.utils import timezone

from apps.compliance.audit import audit_verify
from apps.compliance.holdings import holdings
from apps.compliance.models import AuditEvent, DataSubjectRequest, RetentionRun
from apps.compliance.services import RequestRefused
from apps.security.models import SecurityEvent

REPORT_TYPES = ("soc2", "gdpr")


def _bounds(start_date: Any, end_date: Any) -> tuple[datetime, datetime]:
    def parse(name: str, value: Any) -> date:
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            raise RequestRefused(f"{name} must be a date as YYYY-MM-DD, got {value!r}.") from None

    start, end = parse("start_date", start_date), parse("end_date", end_date)
    if end < start:
        raise RequestRefused("end_date is before start_date.")
    tz = timezone.get_current_timezone()
    # Both dates are included: the range runs to the end of end_date, the next midnight, except after the last day
    # a date can name (9999-12-31, what "everything to date" is often asked as), which has none.
    if end == date.max:
        return datetime.combine(start, time.min, tz), datetime.combine(end, time.max, tz)
    return datetime.combine(start, time.min, tz), datetime.combine(end + timedelta(days=1), time.min, tz)


def _by(queryset: QuerySet, field: str) -> dict[str, int]:
    return {row[field]: row["n"] for row in queryset.values(field).annotate(n=Count("id")).order_by(field)}


def report_build(*, report_type: str, start_date: Any, end_date: Any) -> dict[str, Any]:
    if report_type not in REPORT_TYPES:
        raise RequestRefused(f"Unknown report_type {report_type!r}: use 'soc2' or 'gdpr'.")
    start, end = _bounds(start_date, end_date)
    body = _soc2(start, end) if report_type == "soc2" else _gdpr(start, end)
    return {
        "report_type": report_type,
        "start_date": start.date().isoformat(),
        "end_date": (end - timedelta(microseconds=1)).date().isoformat(),
        "generated_at": timezone.now().isoformat(),
        **body,
    }


def _soc2(start: datetime, end: datetime) -> dict[str, Any]:
    events = AuditEvent.objects.filter(created_at__gte=start, created_at__lt=end)
    security = SecurityEvent.objects.filter(created_at__gte=start, created_at__lt=end)
    tool_calls = events.filter(action__startswith="tool.")
    admin_changes = LogEntry.objects.filter(timestamp__gte=start, timestamp__lt=end)
    chain = audit_verify()
    return {
        "access_events": {"total": tool_calls.count(), "by_outcome": _by(tool_calls, "outcome")},
        "auth_failures": security.filter(kind__in=["auth_failure", "login_failure"]).count(),
        "security_events_by_kind": _by(security, "kind"),
        "admin_changes": {
            "total": admin_changes.count(),
            "by_model": {
                f"{row['content_type__app_label']}.{row['content_type__model']}": row["n"]
                for row in admin_changes.values("content_type__app_label", "content_type__model")
                .annotate(n=Count("id"))
                .order_by("content_type__app_label", "content_type__model")
            },
        },
        "breaker_openings": _by(events.filter(action="breaker.state", outcome="open"), "target"),
        "audit_chain": {
            "intact": chain.ok,
            "verified": chain.verified,
            "broken_at": chain.broken_event_id,
            "problem": chain.problem,
        },
    }


def _gdpr(start: datetime, end: datetime) -> dict[str, Any]:
    requests = DataSubjectRequest.objects.filter(requested_at__gte=start, requested_at__lt=end)
    completed = requests.filter(status=DataSubjectRequest.Status.COMPLETED)
    hours = [(r.completed_at - r.requested_at).total_seconds() / 3600 for r in completed if r.completed_at]
    runs = RetentionRun.objects.filter(started_at__gte=start, started_at__lt=end, dry_run=False)
    removed: dict[str, int] = {}
    for run in runs:
        for category, rows in run.removed.items():
            removed[category] = removed.get(category, 0) + rows
    return {
        "requests": {
            "received": requests.count(),
            "received_by_kind": _by(requests, "kind"),
            "completed": completed.count(),
            "cancelled": requests.filter(status=DataSubjectRequest.Status.CANCELLED).count(),
            "open": requests.filter(status__in=DataSubjectRequest.OPEN).count(),
            "overdue": requests.filter(status__in=DataSubjectRequest.OPEN, due_at__lt=timezone.now()).count(),
            "completed_late": sum(1 for r in completed if r.completed_at and r.completed_at > r.due_at),
            "median_hours_to_complete": round(statistics.median(hours), 2) if hours else None,
        },
        "retention": {"runs": runs.count(), "rows_removed": removed},
        "data_inventory": {
            **{key: value for holding in holdings() for key, value in holding.report().items()},
            "audit_events": AuditEvent.objects.count(),
            "security_events": SecurityEvent.objects.count(),
            "privacy_requests": DataSubjectRequest.objects.count(),
        },
    }
