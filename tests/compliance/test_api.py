"""The privacy JSON API and the compliance reports, over real HTTP with real tokens."""

from __future__ import annotations

import io
import json
import time
import zipfile
from datetime import timedelta
from typing import Any

import httpx2 as httpx
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from apps.compliance.models import DataSubjectRequest, RetentionRun
from apps.security.models import SecurityEvent


def _client(live_site: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=live_site, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_a_person_exports_their_data_through_the_api(
    live_site: str, alice: Any, chorale: Any, token_for: Any, celery_worker: None
) -> None:
    with _client(live_site, token_for(alice, "music21:read", resource="api")) as api:
        held = api.get("/privacy/api/inventory").json()["held"]
        assert held["scores"] == 1
        created = api.post("/privacy/api/requests/", json={"kind": "export"})
        assert created.status_code == 201, created.text
        request_id = created.json()["request"]["id"]
        for _ in range(300):
            found = api.get(f"/privacy/api/requests/{request_id}").json()["request"]
            if found["status"] == "completed":
                break
            time.sleep(0.2)
        download = api.get(found["download_url"])
        assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
        manifest = json.loads(zipfile.ZipFile(io.BytesIO(download.content)).read("manifest.json"))
        assert [s["score_id"] for s in manifest["scores"]] == ["chorale"]


def test_erasure_through_the_api_needs_the_write_scope_and_the_password(
    live_site: str, alice: Any, token_for: Any
) -> None:
    with _client(live_site, token_for(alice, "music21:read", resource="api")) as api:
        refused = api.post(
            "/privacy/api/requests/", json={"kind": "erasure", "password": "correct horse battery staple"}
        )
        assert refused.status_code == 403 and "music21:write" in refused.json()["message"]
    with _client(live_site, token_for(alice, "music21:read music21:write", resource="api")) as api:
        wrong = api.post("/privacy/api/requests/", json={"kind": "erasure", "password": "guess"})
        assert wrong.status_code == 400 and "password" in wrong.json()["message"]
        bad_kind = api.post("/privacy/api/requests/", json={"kind": "copy"})
        assert bad_kind.status_code == 400 and bad_kind.json()["message"] == 'kind: "copy" is not a valid choice.'
        ok = api.post("/privacy/api/requests/", json={"kind": "erasure", "password": "correct horse battery staple"})
        assert ok.status_code == 201 and ok.json()["request"]["status"] == "scheduled"
        request_id = ok.json()["request"]["id"]
        cancelled = api.post(f"/privacy/api/requests/{request_id}/cancel")
        assert cancelled.json()["request"]["status"] == "cancelled"


NESTED_TOO_DEEPLY = '{"kind": "export", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ("[1, 2]", "Expected a dictionary, but got list"),
        ('"export"', "Expected a dictionary, but got str"),
        (NESTED_TOO_DEEPLY, "nested too deeply"),
        ('{"kind": ', "JSON parse error"),
    ],
    ids=["list", "string", "nested", "truncated"],
)
def test_a_request_body_that_is_not_a_json_object_is_refused_with_the_reason(
    live_site: str, alice: Any, token_for: Any, body: str, named: str
) -> None:
    with _client(live_site, token_for(alice, "music21:read music21:write", resource="api")) as api:
        response = api.post("/privacy/api/requests/", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["status"] == "error" and named in response.json()["message"]
    assert not DataSubjectRequest.objects.exists()


def test_a_request_body_too_large_is_refused_in_json_naming_the_limit(
    live_site: str, alice: Any, token_for: Any
) -> None:
    body = json.dumps({"kind": "export", "note": "x" * 3_000_000})
    with _client(live_site, token_for(alice, "music21:read music21:write", resource="api")) as api:
        response = api.post("/privacy/api/requests/", content=body, headers={"Content-Type": "application/json"})
    limit = f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,}"
    assert response.status_code == 413
    assert response.json() == {
        "status": "error",
        "error": "request_too_large",
        "message": f"The request body is larger than the {limit} bytes this API accepts.",
    }
    assert not DataSubjectRequest.objects.exists()


def test_a_report_request_nested_too_deeply_is_refused_with_the_reason(
    live_site: str, alice: Any, token_for: Any
) -> None:
    alice.is_staff = True
    alice.save()
    with _client(live_site, token_for(alice, "music21:admin", resource="api")) as api:
        for body in (NESTED_TOO_DEEPLY, "[1, 2]"):
            response = api.post("/compliance/report", content=body, headers={"Content-Type": "application/json"})
            assert response.status_code == 400
            assert response.json()["status"] == "error", response.text


def test_bob_cannot_see_or_cancel_alices_requests(live_site: str, alice: Any, bob: Any, token_for: Any) -> None:
    from apps.compliance.services import subject_request_create

    request = subject_request_create(subject=alice, kind="erasure", password="correct horse battery staple")
    with _client(live_site, token_for(bob, resource="api")) as api:
        assert api.get(f"/privacy/api/requests/{request.pk}").status_code == 404
        assert api.post(f"/privacy/api/requests/{request.pk}/cancel").status_code == 404
        assert api.get(f"/privacy/api/requests/{request.pk}/download").status_code == 404
        assert api.get("/privacy/api/requests/").json()["requests"] == []
    assert DataSubjectRequest.objects.get(pk=request.pk).status == "scheduled"


def test_without_credentials_the_api_answers_401(live_site: str) -> None:
    response = httpx.get(f"{live_site}/privacy/api/inventory")
    assert response.status_code in (401, 403)
    assert "Sign in" in response.json()["message"]


def _known_events(alice: Any, call: Any) -> None:
    call(alice, "import_score", score_id="tune", source="tinyNotation: 4/4 c4 d e f", source_type="tinynotation")
    call(alice, "score_info", score_id="tune")
    with pytest.raises(Exception):  # noqa: B017 - a not_found outcome, counted below
        call(alice, "score_info", score_id="missing")
    for kind in ("auth_failure", "auth_failure", "login_failure", "rate_limit"):
        SecurityEvent.objects.create(kind=kind, user=alice)


def test_a_soc2_report_counts_the_known_events_exactly(live_site: str, alice: Any, token_for: Any, call: Any) -> None:
    _known_events(alice, call)
    today = timezone.now().date().isoformat()
    body = {"report_type": "soc2", "start_date": today, "end_date": today}
    with _client(live_site, token_for(alice, "music21:read", resource="api")) as api:
        assert api.post("/compliance/report", json=body).status_code == 403  # not an admin token
    officer = get_user_model().objects.create_user("officer", "o@example.com", "x" * 20, is_staff=True)
    with _client(live_site, token_for(officer, "music21:admin", resource="api")) as api:
        report = api.post("/compliance/report", json=body).json()
    assert report["access_events"] == {"total": 3, "by_outcome": {"not_found": 1, "success": 2}}
    assert report["auth_failures"] == 3
    assert report["security_events_by_kind"] == {"auth_failure": 2, "login_failure": 1, "rate_limit": 1}
    assert report["audit_chain"]["intact"] is True
    yesterday = (timezone.now() - timedelta(days=1)).date().isoformat()
    with _client(live_site, token_for(officer, "music21:admin", resource="api")) as api:
        earlier = api.post("/compliance/report", json={**body, "start_date": yesterday, "end_date": yesterday}).json()
        assert earlier["access_events"]["total"] == 0
        bad = api.post("/compliance/report", json={**body, "start_date": "last week"})
        assert bad.status_code == 400 and "start_date" in bad.json()["message"]


def test_a_gdpr_report_counts_requests_and_retention(live_site: str, alice: Any, token_for: Any, call: Any) -> None:
    from apps.compliance.services import subject_request_cancel, subject_request_create

    staff = get_user_model().objects.create_user("officer", "o@example.com", "x" * 20, is_staff=True)
    first = subject_request_create(subject=alice, kind="erasure", password="correct horse battery staple")
    subject_request_cancel(request=first, by=alice)
    subject_request_create(subject=alice, kind="erasure", password="correct horse battery staple")
    overdue = DataSubjectRequest.objects.create(
        subject=staff, subject_pseudonym="x", kind="export", status="pending",
        requested_at=timezone.now(), due_at=timezone.now() - timedelta(days=1),
    )  # fmt: skip
    RetentionRun.objects.create(removed={"scores": 4, "audit_events": 10})
    today = timezone.now().date().isoformat()
    with _client(live_site, token_for(staff, "music21:admin", resource="api")) as api:
        report = api.post("/compliance/report", json={"report_type": "gdpr", "start_date": today, "end_date": today})
    requests = report.json()["requests"]
    assert requests["received"] == 3 and requests["cancelled"] == 1 and requests["open"] == 2
    assert requests["overdue"] == 1 and overdue.is_overdue
    assert report.json()["retention"] == {"runs": 1, "rows_removed": {"scores": 4, "audit_events": 10}}


def test_an_export_no_longer_offered_has_no_download_url(alice: Any, chorale: Any, token_for: Any) -> None:
    from django.test import Client

    from apps.compliance import services
    from apps.compliance.models import ExportArchive

    built = services.subject_request_create(subject=alice, kind="export")
    services.subject_request_run(request_id=built.pk)
    api = Client(headers={"Authorization": f"Bearer {token_for(alice, 'music21:read', resource='api')}"})
    offered = api.get(f"/privacy/api/requests/{built.pk}").json()["request"]
    assert offered["download_url"] == f"/privacy/api/requests/{built.pk}/download"
    assert api.get(offered["download_url"]).status_code == 200

    ExportArchive.objects.filter(request=built).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert api.get(f"/privacy/api/requests/{built.pk}").json()["request"]["download_url"] is None
    assert api.get("/privacy/api/requests/").json()["requests"][0]["download_url"] is None
    gone = api.get(offered["download_url"])
    assert gone.status_code == 404 and "no longer offered" in gone.json()["message"]
