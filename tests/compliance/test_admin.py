"""Administrators read the audit trail, edit retention, and handle data-subject requests from the admin."""

from __future__ import annotations

import time
from typing import Any

from django.contrib.auth import get_user_model

from apps.compliance import services
from apps.compliance.models import AuditEvent, DataSubjectRequest, RetentionPolicy
from tests.support import signed_in, superuser


def test_compliance_pages_render_and_audit_events_cannot_be_changed(alice: Any, chorale: Any) -> None:
    client = signed_in(superuser())
    RetentionPolicy.objects.get_or_create(category="scores", defaults={"days": 30})
    services.subject_request_create(subject=alice, kind="erasure", password="correct horse battery staple")
    event = AuditEvent.objects.filter(action="tool.import_score").first()
    for url in [
        "/admin/compliance/auditevent/",
        f"/admin/compliance/auditevent/{event.pk}/change/",
        "/admin/compliance/retentionpolicy/",
        "/admin/compliance/retentionrun/",
        "/admin/compliance/datasubjectrequest/",
        "/admin/django_celery_beat/periodictask/",
        "/admin/auditlog/logentry/",
        "/compliance/report/view?report_type=gdpr&start_date=2026-01-01&end_date=2030-01-01",
    ]:
        assert client.get(url).status_code == 200, url
    assert client.get("/admin/compliance/auditevent/add/").status_code == 403
    client.post(f"/admin/compliance/auditevent/{event.pk}/delete/", {"post": "yes"})
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_an_administrator_cancels_a_scheduled_erasure(alice: Any, chorale: Any) -> None:
    admin = superuser()
    client = signed_in(admin)
    request = services.subject_request_create(subject=alice, kind="erasure", password="correct horse battery staple")
    client.post(
        "/admin/compliance/datasubjectrequest/",
        {"action": "cancel", "_selected_action": [request.pk]},
        follow=True,
    )
    request.refresh_from_db()
    assert request.status == "cancelled" and request.handled_by == admin
    services.subject_requests_run_due()
    assert get_user_model().objects.filter(username="alice").exists()


def test_run_now_erases_at_once(alice: Any, chorale: Any, celery_worker: None) -> None:
    client = signed_in(superuser())
    request = services.subject_request_create(subject=alice, kind="erasure", password="correct horse battery staple")
    client.post("/admin/compliance/datasubjectrequest/", {"action": "run_now", "_selected_action": [request.pk]})
    for _ in range(300):  # on a real worker when a broker is configured
        if DataSubjectRequest.objects.get(pk=request.pk).status == "completed":
            break
        time.sleep(0.2)
    assert DataSubjectRequest.objects.get(pk=request.pk).status == "completed"
    assert not get_user_model().objects.filter(username="alice").exists()


def test_retention_edits_are_kept_in_the_model_history(db: None) -> None:
    from auditlog.models import LogEntry

    client = signed_in(superuser())
    policy, _ = RetentionPolicy.objects.get_or_create(category="security_events", defaults={"days": 180})
    response = client.post(
        f"/admin/compliance/retentionpolicy/{policy.pk}/change/",
        {"category": "security_events", "days": 60, "enabled": "on"},
    )
    assert response.status_code == 302
    change = LogEntry.objects.get_for_object(policy).latest("timestamp")
    assert change.changes_dict["days"] == ["180", "60"] and change.actor.username == "root"


def test_the_compliance_report_reads_as_sections_in_the_admin_and_downloads_as_json(alice: Any, chorale: Any) -> None:
    import html
    import json
    import re

    services.subject_request_create(subject=alice, kind="erasure", password="correct horse battery staple")
    client = signed_in(superuser())
    assert 'href="/compliance/report/view"' in client.get("/admin/").content.decode()
    page = client.get("/compliance/report/view?report_type=gdpr&start_date=2026-01-01&end_date=2030-01-01")
    text = page.content.decode()
    assert text.count("<h1") == 1 and "<h1>Compliance report</h1>" in text
    assert 'class="breadcrumbs"' in text and 'href="/admin/"' in text
    captions = re.findall(r"<caption>([^<]+)</caption>", text)
    assert captions == ["Requests", "Retention", "Data inventory"]
    assert re.search(r"<th scope=\"row\">Received</th><td>1</td>", text)
    assert '"received_by_kind"' not in text and "<pre" not in text  # no raw JSON on the page
    json_url = html.unescape(re.search(r'class="report-json" href="([^"]+)"', text).group(1))
    download = client.get(json_url)
    assert download["Content-Disposition"].startswith("attachment")
    report = json.loads(download.content)
    assert report["report_type"] == "gdpr" and report["requests"]["received"] == 1
