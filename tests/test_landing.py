"""The landing page at /, and the Content-Security-Policy every page sends (none of which the pages break)."""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.test import Client

from apps.tools.models import Score
from apps.tools.registry import TOOLS
from tests.security.oauth_flow import Browser, pkce_pair, register
from tests.support import (
    ADMIN_PASSWORD,
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    browser_sign_in,
    free_port,
    signed_in,
    superuser,
)

needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package (.ci/run installs it)")


def _csp(response: Any) -> dict[str, str]:
    header = response.headers.get("Content-Security-Policy", "")
    return {part.split()[0]: part.strip() for part in header.split(";") if part.strip()}


def test_the_landing_page_gives_the_mcp_url_and_the_way_on(db: None) -> None:
    response = Client().get("/")

    page = response.content.decode()
    assert response.status_code == 200
    assert f'<code id="mcp-url">{settings.PUBLIC_URL}/mcp</code>' in page
    assert "Claude Desktop" in page
    for href in ("/accounts/login/?next=/privacy/", "/privacy/", "/docs/tools"):
        assert f'href="{href}"' in page
    assert all(f"<code>{name}</code>" in page for name in TOOLS)
    listed = [page.index(f"<code>{name}</code>") for name in ("import_score", "key_analysis", "harmonize_melody")]
    assert listed == sorted(listed)  # a newcomer reads them in the order of the work: import, analyse, compose


def test_the_tool_reference_the_landing_page_links_to_is_served(db: None) -> None:
    response = Client().get("/docs/tools")

    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    assert all(f"## `{name}`" in response.content.decode() for name in TOOLS)


def test_the_admins_view_site_link_goes_to_the_landing_page(db: None) -> None:
    page = signed_in(superuser()).get("/admin/").content.decode()

    assert re.search(r'<a href="/">View site</a>', page)


def test_every_kind_of_page_sends_a_strict_content_security_policy(live_site: str, alice: Any) -> None:
    admin = signed_in(superuser())
    person = signed_in(alice)
    client = register(live_site)
    consent = Browser.logged_in(live_site, "alice").authorize_page(client["client_id"], pkce_pair()[1])
    assert "Allow" in consent.text
    pages = {
        "landing": Client().get("/"),
        "login": Client().get("/accounts/login/"),
        "admin login": Client().get("/admin/login/"),
        "admin index": admin.get("/admin/"),
        "changelist": admin.get("/admin/compliance/auditevent/"),
        "privacy": person.get("/privacy/"),
        "consent": consent,
    }
    for name, response in pages.items():
        assert response.status_code == 200, name
        policy = _csp(response)
        assert policy.get("script-src") == "script-src 'self'", name
        assert policy.get("object-src") == "object-src 'none'", name
        assert policy.get("frame-ancestors") == "frame-ancestors 'none'", name
        assert policy.get("base-uri") == "base-uri 'self'", name
        assert policy.get("img-src") == "img-src 'self' data:", name
        # The sign-in and consent forms' answers redirect to the client (the test below); every other form stays.
        assert ("form-action" in policy) is (name not in ("login", "consent")), name


@needs_chromium
def test_the_landing_page_at_desktop_and_phone_widths(live_site: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        for width in (1280, 390):
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto(f"{live_site}/")
            expect(page.locator("#mcp-url")).to_have_text(f"{live_site}/mcp")
            expect(page.locator("#mcp-url")).to_be_in_viewport()
            # Nothing sticks out sideways at a phone's width.
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            page.screenshot(path=str(ARTIFACTS / f"landing-{width}.png"), full_page=True)
            page.close()
        browser.close()


@needs_chromium
def test_no_page_of_a_walk_through_the_site_breaks_its_content_security_policy(
    live_site: str, alice: Any, chorale: Any
) -> None:
    from playwright.sync_api import expect, sync_playwright

    superuser()
    score = Score.objects.get(score_id="chorale")
    violations: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on(
            "console", lambda message: violations.append(message.text) if "Content Security" in message.text else None
        )
        page.goto(f"{live_site}/")
        expect(page.locator("#mcp-url")).to_be_visible()
        browser_sign_in(page, f"{live_site}/admin/", username="root", password=ADMIN_PASSWORD)
        expect(page.locator("body")).to_contain_text("Last 24 hours")
        for path in (
            "/admin/compliance/auditevent/",
            "/admin/tools/score/",
            "/admin/auth/user/add/",
            "/admin/security/breakers/",
            "/compliance/report/view?report_type=soc2",
        ):
            page.goto(f"{live_site}{path}")
            expect(page.locator("#content")).to_be_visible()
        page.goto(f"{live_site}/admin/tools/score/{score.pk}/change/")
        expect(page.locator("img[alt='Notation of chorale']")).to_be_visible()
        page.goto(f"{live_site}/privacy/")
        expect(page.locator("h1")).to_have_text("Your data")
        browser.close()

    assert violations == []


@needs_chromium
def test_the_consent_form_still_sends_the_browser_back_to_the_client(live_site: str, alice: Any) -> None:
    """form-action governs where a form's answer may redirect, in Chromium: allowing an application must still
    reach its redirect URI, on another origin (a loopback port here, as desktop MCP clients use)."""
    from playwright.sync_api import sync_playwright

    received: list[str] = []

    class Callback(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            received.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"signed in; you can close this window")

        def log_message(self, *args: Any) -> None:
            pass

    port = free_port()
    server = HTTPServer(("127.0.0.1", port), Callback)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    redirect_uri = f"http://127.0.0.1:{port}/callback"
    client = register(live_site, redirect_uris=[redirect_uri])
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client["client_id"],
            "redirect_uri": redirect_uri,
            "scope": "music21:read",
            "state": "st4te",
            "resource": f"{live_site}/mcp",
            "code_challenge": pkce_pair()[1],
            "code_challenge_method": "S256",
        }
    )
    violations: list[str] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page()
            page.on(
                "console", lambda message: violations.append(message.text) if "Content Security" in message.text else 0
            )
            browser_sign_in(
                page, f"{live_site}/o/authorize/?{query}", username="alice", password="correct horse battery staple"
            )
            page.click("button[name=allow]")
            page.wait_for_url(f"{redirect_uri}?*")
            assert "signed in" in page.content()
            browser.close()
    finally:
        server.shutdown()

    assert violations == []
    callbacks = [path for path in received if path.startswith("/callback?")]
    assert len(callbacks) == 1 and "code=" in callbacks[0] and "state=st4te" in callbacks[0]


def test_a_wrong_password_is_reported_beside_the_password_field(db: None, alice: Any) -> None:
    response = Client().post("/accounts/login/", {"username": "alice", "password": "not her password"})

    page = response.content.decode()
    field, error = page.index('id="id_password"'), page.index('id="login-error"')
    assert response.status_code == 200 and 0 < error - field < 300
    assert "didn't match" in page[error : error + 200]
