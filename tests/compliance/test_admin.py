"""Administrators read the audit trail, edit retention, and handle data-subject requests from the admin."""

from __future__ import annotations

import html
import re
import time
from typing import Any

import pytest
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


def test_a_request_cannot_be_deleted_from_the_admin_only_cancelled(alice: Any) -> None:
    client = signed_in(superuser())
    request = services.subject_request_create(subject=alice, kind="erasure", password="correct horse battery staple")
    url = "/admin/compliance/datasubjectrequest/"
    assert client.post(f"{url}{request.pk}/delete/", {"post": "yes"}).status_code == 403
    client.post(url, {"action": "delete_selected", "_selected_action": [request.pk], "post": "yes"})
    assert DataSubjectRequest.objects.get(pk=request.pk).status == "scheduled"


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


def test_a_period_too_long_to_reckon_is_refused_with_its_limit_and_runs_go_on(db: None) -> None:
    client = signed_in(superuser())
    policy, _ = RetentionPolicy.objects.update_or_create(
        category="security_events", defaults={"days": 180, "enabled": True}
    )
    response = client.post(
        f"/admin/compliance/retentionpolicy/{policy.pk}/change/",
        {"category": "security_events", "days": 999999, "enabled": "on"},
    )
    assert response.status_code == 200
    assert "At most 36500 days (100 years); to keep records for ever, disable the policy." in html.unescape(
        response.content.decode()
    )
    policy.refresh_from_db()
    assert policy.days == 180
    dry_run = client.post(
        "/admin/compliance/retentionpolicy/", {"action": "preview", "_selected_action": [policy.pk]}, follow=True
    )
    assert dry_run.status_code == 200 and "A run now would remove" in dry_run.content.decode()


def _nightly_retention() -> Any:
    """The nightly retention task as the migrations create it (a test that flushes the database removes it)."""
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    nightly, _ = CrontabSchedule.objects.get_or_create(
        minute="30", hour="3", day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
    )
    task, _ = PeriodicTask.objects.get_or_create(
        name="Apply retention policies", defaults={"task": "compliance.apply_retention", "crontab": nightly}
    )
    return task


def _schedule_form(schedule: Any, changed: dict[str, str]) -> dict[str, Any]:
    """The periodic task's admin form as its page fills it in, with `changed` typed over it."""
    blank = (
        "task",
        "queue",
        "exchange",
        "routing_key",
        "priority",
        "expires",
        "expire_seconds",
        "one_off",
        "start_time",
    )
    return {
        **dict.fromkeys((*blank, "description"), ""),
        "name": schedule.name,
        "regtask": schedule.task,
        "enabled": "on",
        "crontab": schedule.crontab_id or "",
        "interval": schedule.interval_id or "",
        "args": "[]",
        "kwargs": "{}",
        "headers": "{}",
        **changed,
    }


@pytest.mark.parametrize(
    ("changed", "message"),
    [
        ({"headers": "{oops"}, "This is not JSON"),
        ({"headers": "[]"}, 'Give a JSON object, such as {"header": "value"}, or leave it blank.'),
        ({"kwargs": "[1]"}, 'Give a JSON object, such as {"argument": "value"}, or leave it blank.'),
        ({"args": "{}"}, 'Give a JSON list, such as ["arg1", 2], or leave it blank.'),
        ({"regtask": "compliance.no_such_task"}, "No task 'compliance.no_such_task' is registered"),
        ({"regtask": "", "task": "x" * 201}, "Ensure this value has at most 200 characters"),
    ],
)
def test_a_schedule_the_scheduler_could_not_run_is_refused_with_the_reason(
    db: None, changed: dict[str, str], message: str
) -> None:
    retention = _nightly_retention()
    client = signed_in(superuser())
    url = f"/admin/django_celery_beat/periodictask/{retention.pk}/change/"
    response = client.post(url, _schedule_form(retention, changed))
    assert response.status_code == 200 and message in html.unescape(response.content.decode())
    retention.refresh_from_db()  # unchanged: django-celery-beat's scheduler would skip it without a word
    assert (retention.task, retention.args, retention.kwargs, retention.headers) == (
        "compliance.apply_retention",
        "[]",
        "{}",
        "{}",
    )


def test_blank_headers_on_a_schedule_mean_none(db: None) -> None:
    retention = _nightly_retention()
    client = signed_in(superuser())
    url = f"/admin/django_celery_beat/periodictask/{retention.pk}/change/"
    response = client.post(url, _schedule_form(retention, {"headers": "", "description": "nightly"}))
    assert response.status_code == 302
    retention.refresh_from_db()
    assert retention.headers == "{}" and retention.description == "nightly"


def test_a_crontab_minute_out_of_range_is_refused_on_the_page(db: None) -> None:
    from django_celery_beat.models import CrontabSchedule

    client = signed_in(superuser())
    fields = {"minute": "-1", "hour": "4", "day_of_month": "*", "month_of_year": "*", "day_of_week": "*"}
    response = client.post("/admin/django_celery_beat/crontabschedule/add/", {**fields, "timezone": "UTC"})
    assert response.status_code == 200 and "errorlist" in response.content.decode()
    assert "(not a schedule yet: see the fields below)" in response.content.decode()
    assert not CrontabSchedule.objects.filter(minute="-1").exists()


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


def _results(page: str) -> str:
    """The rows of an admin list, as text a reader sees (without the line-break hints)."""
    return page.split('id="result_list"', 1)[1].split("</table>", 1)[0].replace("<wbr>", "")


def _application(name: str) -> Any:
    from oauth2_provider.models import Application

    return Application.objects.create(
        name=name,
        client_type="public",
        authorization_grant_type="authorization-code",
        redirect_uris="http://127.0.0.1/",
    )


def test_a_report_over_every_date_there_is_counts_everything(alice: Any) -> None:
    import json

    services.subject_request_create(subject=alice, kind="erasure", password="correct horse battery staple")
    client = signed_in(superuser())
    url = "/compliance/report/view?report_type=gdpr&start_date=0001-01-01&end_date=9999-12-31"
    assert client.get(url).status_code == 200
    report = json.loads(client.get(f"{url}&format=json").content)
    assert report["start_date"] == "0001-01-01" and report["end_date"] == "9999-12-31"
    assert report["requests"]["received"] == 1


def test_the_audit_list_finds_a_person_by_username_and_a_client_by_name(alice: Any, bob: Any, call: Any) -> None:
    from apps.security import scopes
    from apps.tools.invocation import Caller, invoke_tool

    notebook = _application("Seminar notebook")
    call(alice, "import_score", score_id="tune", source="tinyNotation: 4/4 c4 d e f", source_type="tinynotation")
    call(bob, "list_scores")
    invoke_tool(
        "list_scores", {}, caller=Caller(user=alice, scopes=scopes.ALL, client_id=notebook.client_id, transport="mcp")
    )
    client = signed_in(superuser())
    listing = "/admin/compliance/auditevent/"
    assert "username" in client.get(listing).content.decode()  # the search box says what it finds

    by_username = _results(client.get(listing, {"q": "alice"}).content.decode())
    assert "tool.import_score" in by_username and by_username.count("tool.list_scores") == 1  # hers, not bob's
    by_client = _results(client.get(listing, {"q": "Seminar notebook"}).content.decode())
    assert "tool.list_scores" in by_client and "tool.import_score" not in by_client
    assert ">Seminar notebook</a>" in by_client  # the client by name, linked to its page
    assert notebook.client_id not in by_client.replace(f'title="{notebook.client_id}"', "")


def test_the_audit_list_names_clients_with_one_query_for_the_page(
    alice: Any, call: Any, django_assert_max_num_queries: Any
) -> None:
    from apps.security import scopes
    from apps.tools.invocation import Caller, invoke_tool

    client = signed_in(superuser())

    def one_call_through(name: str) -> None:
        application = _application(name)
        caller = Caller(user=alice, scopes=scopes.ALL, client_id=application.client_id, transport="mcp")
        invoke_tool("list_scores", {}, caller=caller)

    one_call_through("first client")
    client.get("/admin/compliance/auditevent/")  # warm the session and caches
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as one:
        client.get("/admin/compliance/auditevent/")
    for index in range(5):
        one_call_through(f"client {index}")
    with django_assert_max_num_queries(len(one.captured_queries)):
        page = client.get("/admin/compliance/auditevent/").content.decode()
    assert all(f">client {index}</a>" in page for index in range(5))


def test_the_outcome_and_action_filters_offer_every_value_that_occurs(alice: Any, call: Any) -> None:
    import pytest

    from apps.core.errors import ApplicationError

    call(alice, "import_score", score_id="tune", source="tinyNotation: 4/4 c4 d e f", source_type="tinynotation")
    with pytest.raises(ApplicationError):
        call(alice, "import_score", score_id="tune", source="tinyNotation: 4/4 c4", source_type="tinynotation")
    with pytest.raises(ApplicationError):
        call(alice, "score_info", score_id="missing")
    page = signed_in(superuser()).get("/admin/compliance/auditevent/").content.decode()
    filter_html = page.split('id="changelist-filter"', 1)[1]
    for outcome in AuditEvent.objects.values_list("outcome", flat=True).distinct():
        assert f"?outcome={outcome}" in filter_html, outcome
    for action in AuditEvent.objects.values_list("action", flat=True).distinct():
        assert f"?action={action}" in filter_html, action


def test_durations_retention_counts_and_details_read_as_a_person_reads_them(alice: Any, chorale: Any) -> None:
    from apps.compliance.models import RetentionRun

    run = RetentionRun.objects.create(removed={"scores": 3, "tokens": 2}, duration_ms=1432.5)
    event = AuditEvent.objects.create(
        action="breaker.state", outcome="open", target="export", detail={"from": "closed"}
    )
    client = signed_in(superuser())
    runs = client.get("/admin/compliance/retentionrun/").content.decode()
    assert "scores: 3 · tokens: 2" in runs and "1.4 s" in runs and "{&quot;scores" not in runs
    run_page = client.get(f"/admin/compliance/retentionrun/{run.pk}/change/").content.decode()
    assert '<pre class="json">{\n  &quot;scores&quot;: 3,' in run_page
    audit = client.get("/admin/compliance/auditevent/").content.decode()
    assert re.search(r'class="field-duration">\d+ ms<', audit)  # the chorale's import, in milliseconds
    event_page = client.get(f"/admin/compliance/auditevent/{event.pk}/change/").content.decode()
    assert '<pre class="json">{\n  &quot;from&quot;: &quot;closed&quot;\n}</pre>' in event_page


def test_a_requests_page_shows_who_filed_it_and_its_note_and_changes_nothing(alice: Any) -> None:
    admin = superuser()
    client = signed_in(admin)
    request = services.subject_request_create(subject=alice, kind="export", handled_by=admin, via="admin")
    request.note = "superseded by erasure (request #99)"
    request.save(update_fields=["note"])
    url = f"/admin/compliance/datasubjectrequest/{request.pk}/change/"
    page = client.get(url).content.decode()
    assert "superseded by erasure (request #99)" in page and ">root<" in page.replace("</a>", "<")
    assert 'name="note"' not in page and 'name="filed_by"' not in page  # shown, not editable
    client.post(url, {"note": "rewritten", "filed_by": ""})
    request.refresh_from_db()
    assert request.note == "superseded by erasure (request #99)" and request.filed_by == admin


def test_the_request_lists_offer_the_export_without_reading_its_archive(alice: Any, chorale: Any) -> None:
    """The lists of requests (the admin's, the person's page) show each export's size and download link: they read
    the archive's size and dates, never the ZIP itself, which may be megabytes per row."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.compliance.models import ExportArchive

    built = services.subject_request_create(subject=alice, kind="export")
    services.subject_request_run(request_id=built.pk)
    ExportArchive.objects.filter(request=built).update(content=b"PK" + b"\0" * 3_000_000, size=3_000_002)
    pages = [
        (signed_in(superuser()), "/admin/compliance/datasubjectrequest/", "ZIP, 2929 KB"),
        (signed_in(alice), "/privacy/", f"/privacy/requests/{built.pk}/download"),
    ]
    for client, url, offered in pages:
        with CaptureQueriesContext(connection) as queries:
            page = client.get(url).content.decode()
        assert offered in page, url
        read = [q["sql"] for q in queries if '"compliance_exportarchive"."content"' in q["sql"]]
        assert read == [], url
