"""Celery tasks of the compliance app: each takes ids and calls one service. The periodic ones are scheduled with
django-celery-beat (editable in the admin under Periodic tasks)."""

from __future__ import annotations

from celery import shared_task
from django.contrib.contenttypes.models import ContentType

from apps.compliance import audit, retention, services


@shared_task(name="compliance.run_subject_request", soft_time_limit=25 * 60, time_limit=30 * 60)
def run_subject_request(request_id: int) -> str | None:
    # A long-lived worker must not trust content-type ids cached before the database last changed (a restore, a
    # migration, the test suite's flushes): erasure deletes history rows by content type. One query; rare task.
    ContentType.objects.clear_cache()
    request = services.subject_request_run(request_id=request_id)
    return request.status if request else None


@shared_task(name="compliance.run_due_requests")
def run_due_requests() -> int:
    return services.subject_requests_run_due()


@shared_task(name="compliance.apply_retention", soft_time_limit=55 * 60, time_limit=60 * 60)
def apply_retention() -> dict[str, int]:
    return retention.retention_apply().removed


@shared_task(name="compliance.seal_audit")
def seal_audit() -> int:
    return audit.audit_seal()
