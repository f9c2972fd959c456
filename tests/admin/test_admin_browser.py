"""An administrator's walk through the admin in headless Chromium (Debian's package) at 1280 px: the dashboard, a
count to its list, a client, a person's score with its notation, a request's export, the compliance report; and
every list readable at that width. Screenshots go to test-artifacts/."""

from __future__ import annotations

import io
import zipfile
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application

from apps.compliance import services
from apps.compliance.models import RetentionRun
from apps.core.errors import NotFound
from apps.security import scopes
from apps.security.models import ClientPolicy, SecurityEvent
from apps.tools.invocation import Caller, invoke_tool
from apps.tools.models import Score
from apps.tools.registry import TOOLS
from tests.support import ADMIN_PASSWORD, ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, browser_sign_in, superuser

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package (.ci/run installs it)")

WIDTH = 1280


def _client_with_calls(user: Any) -> Application:
    """A registered client with a long name, a live token and a few calls through it."""
    application = Application.objects.create(
        name="Jupyter notebook of the harmony seminar",
        client_type="confidential",
        authorization_grant_type="authorization-code",
        redirect_uris="http://127.0.0.1:8890/oauth/callback/with/a/rather/long/path",
        user=user,
    )
    ClientPolicy.objects.get_or_create(application=application)
    AccessToken.objects.create(
        user=user,
        application=application,
        token="k" * 40,
        scope="music21:read music21:write",
        expires=timezone.now() + timedelta(hours=1),
    )
    caller = Caller(user=user, scopes=scopes.ALL, client_id=application.client_id, transport="mcp")
    for _ in range(3):
        invoke_tool("key_analysis", {"score_id": "chorale"}, caller=caller)
    SecurityEvent.objects.create(
        kind="scope_violation", client_id=application.client_id, user=user, detail={"tool": "import_score"}
    )
    return application


def test_every_admin_list_reads_at_1280_px(live_site: str, alice: Any, chorale: Any) -> None:
    from playwright.sync_api import sync_playwright

    _client_with_calls(alice)
    RetentionRun.objects.create(removed={"scores": 3, "tokens": 2, "audit_events": 1200}, duration_ms=1432.5)
    request = services.subject_request_create(subject=alice, kind="export")
    services.subject_request_run(request_id=request.pk)
    services.subject_request_create(subject=alice, kind="erasure", password="correct horse battery staple")
    superuser()
    lists = {
        "oauth-clients": "/admin/oauth2_provider/application/",
        "audit-events": "/admin/compliance/auditevent/",
        "security-events": "/admin/security/securityevent/",
        "requests": "/admin/compliance/datasubjectrequest/",
        "retention-runs": "/admin/compliance/retentionrun/",
        "scores": "/admin/tools/score/",
        "users": "/admin/auth/user/",
    }
    measure = """() => {
        const results = document.querySelector('#changelist .results');
        const clipped = [...document.querySelectorAll('#result_list td, #result_list th')]
            .filter(cell => cell.scrollWidth > cell.clientWidth + 1)
            .map(cell => cell.className + ': ' + cell.textContent.trim());
        return {scroll: results.scrollWidth, client: results.clientWidth, rows: document.querySelectorAll(
            '#result_list tbody tr').length, clipped};
    }"""
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": WIDTH, "height": 900})
        browser_sign_in(page, f"{live_site}/admin/", username="root", password=ADMIN_PASSWORD)
        page.wait_for_selector("#dashboard")
        for name, url in lists.items():
            page.goto(f"{live_site}{url}")
            found = page.evaluate(measure)
            page.screenshot(path=str(ARTIFACTS / f"admin-list-{name}.png"), full_page=True)
            assert found["rows"] >= 1, name
            assert found["scroll"] <= found["client"], f"{name}: the table is wider than its container: {found}"
            assert found["clipped"] == [], f"{name}: clipped cells {found['clipped']}"
        browser.close()


def test_an_administrators_main_path(live_site: str, alice: Any, chorale: Any, call: Any) -> None:
    from playwright.sync_api import expect, sync_playwright

    for _ in range(4):
        call(alice, "key_analysis", score_id="chorale")
    with pytest.raises(NotFound):
        call(alice, "score_info", score_id="missing")
    application = _client_with_calls(alice)
    export = services.subject_request_create(subject=alice, kind="export")
    services.subject_request_run(request_id=export.pk)
    superuser()
    score = Score.objects.get(score_id="chorale")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": WIDTH, "height": 900}, accept_downloads=True)
        refused: list[str] = []  # what the Content-Security-Policy blocked (inline styles or scripts)
        page.on("console", lambda message: refused.append(message.text) if "Content Security" in message.text else None)
        browser_sign_in(page, f"{live_site}/admin/", username="root", password=ADMIN_PASSWORD)

        # The dashboard: import + 4 + 3 analyses + 1 refused call = 9 calls in 24 hours, 1 not successful.
        expect(page.locator("#calls-24h")).to_have_text("9")
        expect(page.locator("#errors-24h")).to_have_text("1")
        expect(page.locator('#top-tools tr[data-tool="key_analysis"] .calls')).to_have_text("7")
        expect(page.locator("#top-tools tbody tr")).to_have_count(len(TOOLS))
        page.screenshot(path=str(ARTIFACTS / "admin-dashboard.png"), full_page=True)

        # A count opens the list behind it, with as many rows.
        page.click("#errors-24h")
        expect(page.locator("#result_list tbody tr")).to_have_count(1)
        expect(page.locator("#result_list tbody")).to_contain_text("not_found")
        page.screenshot(path=str(ARTIFACTS / "admin-errors-list.png"), full_page=True)

        # The client's page, its calls shown by name in the audit list.
        page.goto(f"{live_site}/admin/oauth2_provider/application/{application.pk}/change/")
        expect(page.locator("body")).to_contain_text("Jupyter notebook of the harmony seminar")
        expect(page.locator("a", has_text="View on site")).to_have_count(0)
        page.screenshot(path=str(ARTIFACTS / "admin-client.png"), full_page=True)
        page.goto(f"{live_site}/admin/compliance/auditevent/?q=Jupyter notebook of the harmony seminar")
        expect(page.locator("#result_list tbody tr")).to_have_count(3)
        expect(page.locator("#result_list .field-client").first).to_have_text("Jupyter notebook of the harmony seminar")

        # A person's score, with its notation.
        page.goto(f"{live_site}/admin/tools/score/{score.pk}/change/")
        notation = page.locator("img[alt='Notation of chorale']")
        expect(notation).to_be_visible()
        assert notation.evaluate("img => img.naturalWidth") > 100  # the SVG really rendered
        page.screenshot(path=str(ARTIFACTS / "admin-score.png"), full_page=True)

        # A request's export, downloaded from the request list: the ZIP opens.
        page.goto(f"{live_site}/admin/compliance/datasubjectrequest/")
        with page.expect_download() as download:
            page.click("a.export-download")
        with zipfile.ZipFile(io.BytesIO(download.value.path().read_bytes())) as archive:
            assert archive.testzip() is None and archive.namelist()
        page.screenshot(path=str(ARTIFACTS / "admin-requests.png"), full_page=True)

        # The compliance report, from the dashboard.
        page.goto(f"{live_site}/admin/")
        page.click("#report-link")
        page.select_option("select[name=report_type]", "gdpr")
        page.fill("input[name=start_date]", "2026-01-01")
        page.fill("input[name=end_date]", "2030-12-31")
        page.click(".report-form [type=submit]")
        expect(page.locator("h1")).to_have_count(1)
        expect(page.locator(".report-section caption")).to_have_text(["Requests", "Retention", "Data inventory"])
        page.screenshot(path=str(ARTIFACTS / "admin-report.png"), full_page=True)
        page.emulate_media(media="print")
        expect(page.locator("#header")).to_be_hidden()
        expect(page.locator(".report-form")).to_be_hidden()
        page.screenshot(path=str(ARTIFACTS / "admin-report-print.png"), full_page=True)
        browser.close()
    assert refused == []
