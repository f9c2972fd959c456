"""An administrator's walk through the admin in headless Chromium (Debian's package): the dashboard, a score with
its notation, a data-subject request. Screenshots go to test-artifacts/."""

from __future__ import annotations

from typing import Any

import pytest

from apps.compliance import services
from apps.core.errors import NotFound
from apps.tools.models import Score
from tests.support import ADMIN_PASSWORD, ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, browser_sign_in, superuser

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package (.ci/run installs it)")


def test_an_administrator_reads_the_dashboard_a_score_and_a_request(
    live_site: str, alice: Any, chorale: Any, call: Any, monkeypatch: Any
) -> None:
    from playwright.sync_api import expect, sync_playwright

    for _ in range(4):
        call(alice, "key_analysis", score_id="chorale")
    with pytest.raises(NotFound):
        call(alice, "score_info", score_id="missing")
    request = services.subject_request_create(subject=alice, kind="erasure", password="correct horse battery staple")
    superuser()
    score = Score.objects.get(score_id="chorale")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API keeps a loop on this thread
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        browser_sign_in(page, f"{live_site}/admin/", username="root", password=ADMIN_PASSWORD)
        # import + 4 analyses + 1 refused call = 6 calls in the last 24 hours, 1 of them not successful.
        expect(page.locator("#calls-24h")).to_have_text("6")
        expect(page.locator("#errors-24h")).to_have_text("1")
        expect(page.locator("#top-tools tr", has_text="key_analysis").locator(".calls")).to_have_text("4")
        page.screenshot(path=str(ARTIFACTS / "admin-dashboard.png"), full_page=True)

        page.goto(f"{live_site}/admin/tools/score/{score.pk}/change/")
        notation = page.locator("img[alt='Notation of chorale']")
        page.screenshot(path=str(ARTIFACTS / "admin-score.png"), full_page=True)
        expect(notation).to_be_visible()
        assert notation.evaluate("img => img.naturalWidth") > 100  # the SVG really rendered
        page.screenshot(path=str(ARTIFACTS / "admin-score.png"), full_page=True)

        page.goto(f"{live_site}/admin/compliance/datasubjectrequest/{request.pk}/change/")
        expect(page.locator("body")).to_contain_text("scheduled")
        page.screenshot(path=str(ARTIFACTS / "admin-request.png"), full_page=True)
        browser.close()
