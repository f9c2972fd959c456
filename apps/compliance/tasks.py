"""Celery tasks of the compliance app: each takes ids and calls one service. The periodic ones are scheduled with
django-celery-beat (editable in the admin under Periodic tasks).

The services sit below this module and never start a task; the edges (the privacy pages, the API, the admin) call
subject_request_start after filing or approving a request."""

from __future__ import annotations

from celery import shared_task
from django.contrib.contenttypes.models import ContentType
from django.db import transaction

from apps.compliance import audit, retention, services
from apps.compliance.models import DataSubjectRequest


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


def subject_request_start(request: DataSubjectRequest) -> None:
    """Hand a request that is due now (services.subject_request_is_due) to a worker once the transaction that filed
    or approved it commits, so that the worker finds its row. Without a broker the task runs in this process at
    that moment. A due request no one started still runs, on the next run_due_requests."""
    if services.subject_request_is_due(request=request):
        transaction.on_commit(lambda: run_subject_request.delay(request.pk))
