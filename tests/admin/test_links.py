"""An administrator's links and records: every link on the main admin pages leads somewhere, a request's export
downloads from the admin, and looking at a person's score is recorded as the administrator's access."""

from __future__ import annotations

import html
import io
import json
import re
import zipfile
from typing import Any
from urllib.parse import urlsplit

from django.test import Client
from oauth2_provider.models import AccessToken, Application

from apps.compliance import services
from apps.compliance.models import AuditEvent, DataSubjectRequest, ExportArchive, RetentionRun, SubjectKey
from apps.security.models import ClientPolicy, SecurityEvent
from apps.tools.models import Score
from tests.support import signed_in, superuser


def _links(page: str) -> set[str]:
    """Every <a href> of a page that stays on this site (not "#", mailto: or another host)."""
    found = set()
    for raw in re.findall(r'<a\s[^>]*href="([^"]*)"', page):
        href = html.unescape(raw)
        parts = urlsplit(href)
        if not href or href.startswith(("#", "mailto:", "javascript:")) or parts.netloc not in ("", "testserver"):
            continue
        found.add(href)
    return found


def _resolve(base: str, href: str) -> str:
    from urllib.parse import urljoin

    return urljoin(f"http://testserver{base}", href).removeprefix("http://testserver")


def _broken(client: Client, pages: list[str]) -> dict[str, int]:
    """Follows every link of `pages` once; returns those that answer 404 or 5xx, with the status."""
    seen: dict[str, int] = {}
    for page_url in pages:
        page = client.get(page_url)
        assert page.status_code == 200, page_url
        for href in _links(page.content.decode()):
            url = _resolve(page_url, href)
            if url not in seen:
                seen[url] = client.get(url).status_code
    return {url: status for url, status in seen.items() if status == 404 or status >= 500}


def _export_ready(subject: Any) -> DataSubjectRequest:
    request = services.subject_request_create(subject=subject, kind="export")
    services.subject_request_run(request_id=request.pk)
    request.refresh_from_db()
    assert request.status == DataSubjectRequest.Status.COMPLETED
    return request


def test_every_link_on_the_main_admin_pages_answers(alice: Any, chorale: Any, call: Any) -> None:
    root = superuser()
    application = Application.objects.create(
        name="Notebook client",
        client_type="public",
        authorization_grant_type="authorization-code",
        redirect_uris="http://127.0.0.1/cb",
        user=alice,
    )
    ClientPolicy.objects.get_or_create(application=application)
    from datetime import timedelta

    from django.utils import timezone

    AccessToken.objects.create(
        user=alice, application=application, token="t" * 40, scope="music21:read", expires=timezone.now() + timedelta(1)
    )
    SecurityEvent.objects.create(kind="cross_tenant", client_id=application.client_id, user=alice)
    RetentionRun.objects.create(removed={"scores": 3, "tokens": 2}, duration_ms=1450)
    request = _export_ready(alice)
    score = Score.objects.get(score_id="chorale")
    client = signed_in(root)

    index = client.get("/admin/").content.decode()
    changelists = sorted({href for href in _links(index) if re.fullmatch(r"/admin/\w+/\w+/", href)})
    assert "/admin/oauth2_provider/application/" in changelists and len(changelists) >= 10
    pages = [
        "/admin/",
        *changelists,
        f"/admin/oauth2_provider/application/{application.pk}/change/",
        f"/admin/auth/user/{alice.pk}/change/",
        f"/admin/tools/score/{score.pk}/change/",
        f"/admin/compliance/datasubjectrequest/{request.pk}/change/",
    ]
    assert _broken(client, pages) == {}


def test_an_administrator_downloads_a_persons_export_from_the_request_list(alice: Any, chorale: Any) -> None:
    root = superuser()
    request = _export_ready(alice)
    client = signed_in(root)
    listing = client.get("/admin/compliance/datasubjectrequest/").content.decode()
    link = html.unescape(re.search(r'<a href="([^"]+)" class="export-download">', listing).group(1))
    change_page = client.get(f"/admin/compliance/datasubjectrequest/{request.pk}/change/").content.decode()
    assert f'href="{link}"' in change_page  # the same download on the request's page

    response = client.get(link)
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.testzip() is None and len(archive.namelist()) > 1
    root_key = SubjectKey.objects.get(user=root)
    downloaded = AuditEvent.objects.get(action="privacy.export_downloaded")
    assert downloaded.actor == root_key.pseudonym and downloaded.target == f"request:{request.pk}"


def test_an_administrators_download_of_her_export_is_in_her_next_export_and_found_by_her_name(
    alice: Any, chorale: Any
) -> None:
    root = superuser()
    first = _export_ready(alice)
    client = signed_in(root)
    assert client.get(f"/admin/compliance/datasubjectrequest/{first.pk}/download/").status_code == 200
    signed_in(alice).get(f"/privacy/requests/{first.pk}/download")  # her own download is her own activity

    found = client.get("/admin/compliance/auditevent/", {"q": "alice"}).content.decode()
    assert found.count("privacy.<wbr>export_<wbr>downloaded") == 2  # hers, and the administrator's
    second = _export_ready(alice)
    with zipfile.ZipFile(io.BytesIO(bytes(ExportArchive.objects.get(request=second).content))) as archive:
        told = json.loads(archive.read("administrator_events.json"))
    assert [(e["action"], e["target"]) for e in told] == [("privacy.export_downloaded", f"request:{first.pk}")]


def test_an_administrator_looking_at_a_persons_score_is_recorded_as_their_access(alice: Any, chorale: Any) -> None:
    root = superuser()
    score = Score.objects.get(score_id="chorale")
    before = services.subject_inventory(user=alice)["audit_events"]

    page = signed_in(root).get(f"/admin/tools/score/{score.pk}/change/").content.decode()
    assert 'alt="Notation of chorale"' in page and "data:image/svg+xml;base64," in page

    alice_key, root_key = SubjectKey.objects.get(user=alice), SubjectKey.objects.get(user=root)
    hers = AuditEvent.objects.filter(actor=alice_key.pseudonym)
    assert not hers.filter(action__contains="render_score").exists()
    assert services.subject_inventory(user=alice)["audit_events"] == before  # her own activity did not grow
    access = AuditEvent.objects.get(actor=root_key.pseudonym, action="admin.render_score")
    assert access.detail["subject"] == alice_key.pseudonym and access.target == "score:chorale"
    assert access.outcome == "success" and access.transport == "admin"
    # Searching the trail for her finds the administrator's access too, shown as such.
    found = signed_in(root).get("/admin/compliance/auditevent/", {"q": "alice"}).content.decode()
    assert "admin.<wbr>render_<wbr>score" in found and "tool.<wbr>render_<wbr>score" not in found


def test_an_administrator_downloading_a_persons_score_source_is_recorded_and_in_her_export(
    alice: Any, chorale: Any
) -> None:
    root = superuser()
    score = Score.objects.get(score_id="chorale")
    response = signed_in(root).get(f"/admin/tools/score/{score.pk}/source/")
    assert response.status_code == 200 and response.content == b"bach/bwv66.6"

    alice_key, root_key = SubjectKey.objects.get(user=alice), SubjectKey.objects.get(user=root)
    access = AuditEvent.objects.get(actor=root_key.pseudonym, action="admin.score_source")
    assert access.detail["subject"] == alice_key.pseudonym and access.target == "score:chorale"
    found = signed_in(root).get("/admin/compliance/auditevent/", {"q": "alice"}).content.decode()
    assert "admin.<wbr>score_<wbr>source" in found
    export = services.subject_request_create(subject=alice, kind="export")
    services.subject_request_run(request_id=export.pk)
    with zipfile.ZipFile(io.BytesIO(bytes(ExportArchive.objects.get(request=export).content))) as archive:
        told = json.loads(archive.read("administrator_events.json"))
    assert [(e["action"], e["target"]) for e in told] == [("admin.score_source", "score:chorale")]


def test_only_staff_read_another_persons_score(alice: Any, bob: Any, chorale: Any) -> None:
    import pytest

    from apps.tools.caller import Caller

    with pytest.raises(ValueError, match="only staff"):
        Caller.administrator(bob, owner=alice)
