"""A person uses /privacy/ in a real headless Chromium (Debian's package): sees what is held, downloads the
export, requests erasure. Screenshots are saved under test-artifacts/."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from apps.compliance.models import DataSubjectRequest
from tests.support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, browser_sign_in

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package (.ci/run installs it)")


def test_a_person_downloads_their_data_and_asks_for_erasure(
    live_site: str, alice: Any, chorale: Any, celery_worker: None, monkeypatch: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    # Playwright's sync API keeps an event loop on this thread; the test's own database reads are still plain
    # synchronous code between its calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(accept_downloads=True)
        browser_sign_in(page, f"{live_site}/privacy/", username="alice", password="correct horse battery staple")
        expect(page.locator("h1")).to_have_text("Your data")
        expect(page.locator('[data-category="scores"]')).to_have_text("1")
        page.screenshot(path=str(ARTIFACTS / "privacy-home.png"), full_page=True)

        page.click("#request-export")
        expect(page.locator(".message")).to_contain_text("being prepared")
        for _ in range(100):  # the export is built by a Celery task; the page shows it once done
            if page.locator("a.download").count():
                break
            page.wait_for_timeout(200)
            page.reload()
        with page.expect_download() as download_info:
            page.click("a.download")
        saved = tmp_path / "export.zip"
        download_info.value.save_as(saved)
        manifest = json.loads(zipfile.ZipFile(io.BytesIO(saved.read_bytes())).read("manifest.json"))
        assert [s["score_id"] for s in manifest["scores"]] == ["chorale"]
        page.screenshot(path=str(ARTIFACTS / "privacy-export-ready.png"), full_page=True)

        page.fill("#id_erase_password", "not my password")
        page.click("#request-erasure")
        expect(page.locator(".message.error")).to_contain_text("password is not correct")
        page.fill("#id_erase_password", "correct horse battery staple")
        page.click("#request-erasure")
        expect(page.locator(".message")).to_contain_text("will be erased on")
        page.screenshot(path=str(ARTIFACTS / "privacy-erasure-scheduled.png"), full_page=True)
        browser.close()

    erasure = DataSubjectRequest.objects.get(kind="erasure")
    assert erasure.status == "scheduled" and erasure.subject == alice
