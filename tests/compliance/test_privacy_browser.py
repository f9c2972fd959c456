"""A person uses /privacy/ in a real headless Chromium (Debian's package): sees what is held and the applications
she authorised, revokes one, downloads the export and finds her music and tokens in it, and requests erasure; at
1280 px and at a phone's 390 px. Screenshots are saved under test-artifacts/."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import httpx2
import pytest
from music21 import converter
from oauth2_provider.models import AccessToken, Application, RefreshToken

from apps.compliance import services
from apps.compliance.models import DataSubjectRequest
from tests.support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, browser_sign_in, superuser

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package (.ci/run installs it)")

PASSWORD = "correct horse battery staple"
PHONE = {"width": 390, "height": 844}


def _wait_for_download_link(page: Any) -> None:
    for _ in range(150):  # the export is built by a Celery task; the page shows it once done
        if page.locator("a.download").count():
            return
        page.wait_for_timeout(200)
        page.reload()
    raise AssertionError("the export never became downloadable")


def _fits_the_phone(page: Any) -> None:
    """Nothing runs past the right edge of a 390 px screen, and every download link is wholly on it."""
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for link in page.locator("a.download").all():
        box = link.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box


def test_a_person_revokes_an_application_and_downloads_everything_held(
    live_site: str, alice: Any, chorale: Any, token_for: Any, celery_worker: None, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    # Two applications act for her: one she will revoke (with a refresh token, as the code flow gives), one she keeps.
    revoked_token = token_for(alice)
    doomed = AccessToken.objects.get(user=alice)
    Application.objects.filter(pk=doomed.application_id).update(name="Notation helper")
    RefreshToken.objects.create(user=alice, application=doomed.application, token="r" * 40, access_token=doomed)
    kept_token = token_for(alice, "music21:read")
    Application.objects.exclude(pk=doomed.application_id).update(name="Score reader")

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(accept_downloads=True, viewport={"width": 1280, "height": 900})
        browser_sign_in(page, f"{live_site}/privacy/", username="alice", password=PASSWORD)
        expect(page.locator("h1")).to_have_text("Your data")
        helper = page.locator('.applications li:has-text("Notation helper")')
        expect(helper.locator(".granted code")).to_have_text(["music21:read", "music21:write"])
        expect(page.locator('.applications li:has-text("Score reader") .granted code')).to_have_text(["music21:read"])
        expect(helper).to_contain_text("First authorised")
        expect(helper).to_contain_text("last used")
        page.screenshot(path=str(ARTIFACTS / "privacy-applications-1280.png"), full_page=True)

        helper.locator("button.revoke").click()
        expect(page.locator(".message")).to_contain_text("Notation helper can no longer use your account")
        expect(page.locator(".applications li")).to_have_count(1)
        expect(page.locator(".applications li .app-name")).to_have_text("Score reader")
        page.screenshot(path=str(ARTIFACTS / "privacy-application-revoked-1280.png"), full_page=True)
        for token, status in ((revoked_token, 401), (kept_token, 200)):
            answer = httpx2.post(
                f"{live_site}/mcp",
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"},
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            )
            assert answer.status_code == status

        page.click("#request-export")
        expect(page.locator(".message")).to_contain_text("being prepared")
        _wait_for_download_link(page)
        page.screenshot(path=str(ARTIFACTS / "privacy-export-ready-1280.png"), full_page=True)
        with page.expect_download() as download_info:
            page.click("a.download")
        saved = tmp_path / "export.zip"
        download_info.value.save_as(saved)

        page.set_viewport_size(PHONE)
        page.reload()
        _fits_the_phone(page)
        page.locator("a.download").scroll_into_view_if_needed()
        expect(page.locator("a.download")).to_be_in_viewport(ratio=1)
        page.screenshot(path=str(ARTIFACTS / "privacy-390.png"), full_page=True)
        browser.close()

    archive = zipfile.ZipFile(io.BytesIO(saved.read_bytes()))
    manifest = json.loads(archive.read("manifest.json"))
    [entry] = manifest["scores"]
    assert entry["score_id"] == "chorale" and entry["corpus_path"] == "bach/bwv66.6"
    music = converter.parse(archive.read(entry["musicxml"]), format="musicxml")
    assert [part.partName for part in music.parts] == ["Soprano", "Alto", "Tenor", "Bass"]
    tokens = json.loads(archive.read("oauth_tokens.json"))
    listed = sorted((t["application"], t["kind"], t["revoked"], " ".join(t["scopes"])) for t in tokens)
    assert listed == [
        ("Notation helper", "refresh token", True, ""),  # its access token went with the revocation
        ("Score reader", "access token", False, "music21:read"),
    ]
    everything = b"".join(archive.read(name) for name in archive.namelist())
    assert kept_token.encode() not in everything and revoked_token.encode() not in everything
    assert b"r" * 40 not in everything
    assert "you filed it (privacy page)" in archive.read("README.txt").decode()


def test_a_person_asks_for_erasure_on_a_phone(live_site: str, alice: Any, chorale: Any) -> None:
    from playwright.sync_api import expect, sync_playwright

    # An export an administrator filed for her, waiting for approval: the page says who filed it.
    services.subject_request_create(subject=alice, kind="export", handled_by=superuser(), via="admin")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport=PHONE)
        browser_sign_in(page, f"{live_site}/privacy/", username="alice", password=PASSWORD)
        expect(page.locator("tr[data-request] .filed-by")).to_have_text("filed by an administrator, root")
        _fits_the_phone(page)

        page.fill("#id_erase_password", "not my password")
        page.click("#request-erasure")
        error = page.locator("#id_erase_password_error")
        expect(error).to_have_text("The password is not correct; erasure needs the account's password.")
        expect(page.locator("#id_erase_password")).to_have_attribute("aria-describedby", "id_erase_password_error")
        # Beside the field (just under it), where the person is looking, and on screen without scrolling away.
        field = page.locator("#id_erase_password").bounding_box()
        shown = error.bounding_box()
        assert field is not None and shown is not None
        assert 0 <= shown["y"] - (field["y"] + field["height"]) < 40
        expect(page.locator("#id_erase_password")).to_be_focused()  # and scrolled to, without scrolling by hand
        expect(error).to_be_in_viewport(ratio=1)
        _fits_the_phone(page)
        page.screenshot(path=str(ARTIFACTS / "privacy-erasure-wrong-password-390.png"), full_page=True)

        page.fill("#id_erase_password", PASSWORD)
        page.click("#request-erasure")
        expect(page.locator(".message")).to_contain_text("will be erased on")
        page.screenshot(path=str(ARTIFACTS / "privacy-erasure-scheduled-390.png"), full_page=True)
        browser.close()

    erasure = DataSubjectRequest.objects.get(kind="erasure")
    assert erasure.status == "scheduled" and erasure.subject == alice
