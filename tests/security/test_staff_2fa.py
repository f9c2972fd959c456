"""Staff sign in with a password and a second factor: an authenticator app (TOTP), or a recovery code, each usable
once. Without it no staff page opens; a staff member with no device yet is led to enrol one."""

from __future__ import annotations

import base64
import re
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from oauth2_provider.models import Application

from apps.security import scopes
from apps.security.models import SecurityEvent
from apps.security.staff_otp import staff_recovery_codes_issue
from tests.security.oauth_flow import REDIRECT_URI, pkce_pair
from tests.support import (
    ADMIN_PASSWORD,
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    signed_in,
    staff_user,
    superuser,
    totp_code,
    totp_device,
)

STAFF_PAGES = [
    "/admin/",
    "/admin/auth/user/",
    "/admin/compliance/auditevent/",
    "/admin/security/breakers/",
    "/compliance/report/view",
]


def _password_only(username: str) -> Client:
    """A browser that gave the admin's sign-in form the right password, and nothing else yet."""
    client = Client()
    response = client.post("/admin/login/", {"username": username, "password": ADMIN_PASSWORD, "next": "/admin/"})
    assert response.status_code == 302, "the password was refused"
    return client


def _code_now(device: TOTPDevice) -> str:
    return f"{TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift).token():06d}"


def test_a_staff_member_with_only_a_password_is_sent_to_enrolment_and_opens_no_staff_page(db: None) -> None:
    get_user_model().objects.create_superuser("newadmin", "new@example.com", ADMIN_PASSWORD)
    client = _password_only("newadmin")

    landed = client.get("/admin/", follow=True)
    assert landed.redirect_chain[-1][0].startswith("/accounts/second-factor/enrol/")
    assert "Set up your second factor" in landed.content.decode()
    for url in STAFF_PAGES:
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url
    assert client.get("/server_stats").status_code == 403
    report = client.post("/compliance/report", {"report_type": "soc2"}, content_type="application/json")
    assert report.status_code == 403 and "second factor" in report.json()["message"]


def test_enrolment_with_the_apps_code_opens_the_admin_and_shows_recovery_codes_once(db: None) -> None:
    get_user_model().objects.create_superuser("newadmin", "new@example.com", ADMIN_PASSWORD)
    client = _password_only("newadmin")
    page = client.get("/accounts/second-factor/enrol/?next=/admin/").content.decode()
    assert 'src="data:image/svg+xml' in page  # the QR code
    device = TOTPDevice.objects.get(user__username="newadmin", confirmed=False)
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page).group(1).replace(" ", "")
    assert base64.b32decode(secret) == device.bin_key  # the secret as text is the one in the QR code

    done = client.post("/accounts/second-factor/enrol/", {"otp_token": _code_now(device), "next": "/admin/"})

    assert done.status_code == 302 and done["Location"].startswith("/accounts/second-factor/recovery-codes/")
    shown = client.get(done["Location"]).content.decode()
    codes = re.findall(r"<li><code>(\w+)</code></li>", shown)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert client.get("/admin/").status_code == 200
    assert client.get("/server_stats").status_code == 200
    again = client.get(done["Location"]).content.decode()
    assert not any(code in again for code in codes) and "10 unused recovery codes" in again


def test_a_wrong_code_at_enrolment_is_refused_with_the_error_beside_the_field(db: None) -> None:
    get_user_model().objects.create_superuser("newadmin", "new@example.com", ADMIN_PASSWORD)
    client = _password_only("newadmin")
    client.get("/accounts/second-factor/enrol/")
    device = TOTPDevice.objects.get(user__username="newadmin", confirmed=False)
    wrong = f"{(int(_code_now(device)) + 500000) % 1000000:06d}"

    response = client.post("/accounts/second-factor/enrol/", {"otp_token": wrong, "next": "/admin/"})

    page = response.content.decode()
    assert response.status_code == 200
    field, error = page.index('id="id_otp_token"'), page.index('id="otp-token-error"')
    assert 0 < error - field < 300 and "That code is not right" in page[error : error + 200]
    assert not TOTPDevice.objects.get(pk=device.pk).confirmed
    assert client.get("/admin/").status_code == 302


def test_a_later_sign_in_asks_for_the_apps_code(db: None) -> None:
    staff = staff_user("ops", is_superuser=True)
    client = _password_only("ops")

    asked = client.get("/admin/", follow=True)
    assert asked.redirect_chain[-1][0].startswith("/accounts/second-factor/?")
    verified = client.post("/accounts/second-factor/", {"otp_token": totp_code(totp_device(staff)), "next": "/admin/"})

    assert verified.status_code == 302 and verified["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_a_recovery_code_signs_in_once_and_not_twice(db: None) -> None:
    staff = staff_user("ops", is_superuser=True)
    code = staff_recovery_codes_issue(user=staff)[0]

    first = _password_only("ops")
    assert first.post("/accounts/second-factor/", {"otp_token": code, "next": "/admin/"}).status_code == 302
    assert first.get("/admin/").status_code == 200

    second = _password_only("ops")
    refused = second.post("/accounts/second-factor/", {"otp_token": code, "next": "/admin/"})
    assert refused.status_code == 200 and "not right, or was already used" in refused.content.decode()
    assert second.get("/admin/").status_code == 302
    # The refused code is a failed sign-in of that person, which administrators see among security events.
    assert SecurityEvent.objects.filter(kind="login_failure", user=staff, detail__factor="second").count() == 1


def test_a_person_who_is_not_staff_gets_no_code_page(db: None) -> None:
    person = get_user_model().objects.create_user("carol", "carol@example.com", ADMIN_PASSWORD)
    response = signed_in(person).get("/accounts/second-factor/enrol/")

    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert not TOTPDevice.objects.filter(user=person).exists()


def test_the_support_helpers_sign_staff_in_verified(db: None) -> None:
    assert signed_in(superuser()).get("/admin/").status_code == 200


def _authorize_url(scope: str) -> str:
    application = Application.objects.create(
        name="Assistant",
        client_type=Application.CLIENT_PUBLIC,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=REDIRECT_URI,
    )
    query = {
        "response_type": "code",
        "client_id": application.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": scope,
        "state": "st4te",
        "resource": f"{settings.PUBLIC_URL}/mcp",
        "code_challenge": pkce_pair()[1],
        "code_challenge_method": "S256",
    }
    return f"/o/authorize/?{urlencode(query)}"


def test_operator_access_is_granted_to_an_application_only_after_the_second_factor(db: None) -> None:
    staff = staff_user("ops", is_superuser=True)
    url = _authorize_url(f"{scopes.READ} {scopes.ADMIN}")
    client = _password_only("ops")

    asked = client.get(url)
    assert asked.status_code == 302 and asked["Location"].startswith("/accounts/second-factor/?")
    client.post("/accounts/second-factor/", {"otp_token": totp_code(totp_device(staff)), "next": url})
    consent = client.get(url).content.decode()
    assert f"<li><code>{scopes.ADMIN}</code>" in consent


def test_a_consent_form_altered_to_ask_for_operator_access_is_refused_without_the_second_factor(db: None) -> None:
    staff_user("ops", is_superuser=True)
    client = _password_only("ops")
    consent = client.get(_authorize_url(scopes.READ))
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', consent.content.decode()))
    fields.update(scope=f"{scopes.READ} {scopes.ADMIN}", allow="Authorize")

    answer = client.post("/o/authorize/", fields)

    assert answer.status_code == 302 and answer["Location"].startswith(REDIRECT_URI)
    assert "error=invalid_scope" in answer["Location"] and "code=" not in answer["Location"]


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package (.ci/run installs it)")
def test_a_new_administrator_enrols_an_app_at_first_sign_in_in_a_browser(live_site: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    get_user_model().objects.create_superuser("newadmin", "new@example.com", ADMIN_PASSWORD)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{live_site}/admin/")
        page.fill("#id_username", "newadmin")
        page.fill("#id_password", ADMIN_PASSWORD)
        page.click("form [type=submit]")

        expect(page.locator("h1")).to_have_text("Set up your second factor")
        qr = page.locator("img.qr")
        expect(qr).to_be_visible()
        assert qr.evaluate("img => img.naturalWidth") > 100
        page.screenshot(path=str(ARTIFACTS / "staff-enrol.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})  # on a phone, nothing sticks out sideways
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=str(ARTIFACTS / "staff-enrol-390.png"), full_page=True)
        # What an authenticator app does with the secret it was given.
        secret = base64.b32decode(page.locator("#totp-secret").inner_text().replace(" ", ""))
        page.fill("#id_otp_token", f"{TOTP(secret).token():06d}")
        page.click("main form [type=submit]")

        expect(page.locator("#recovery-codes li")).to_have_count(10)
        page.screenshot(path=str(ARTIFACTS / "staff-recovery-codes.png"), full_page=True)
        page.click("a.continue")
        expect(page.locator("#site-name")).to_contain_text("music21 platform")
        expect(page.locator("body")).to_contain_text("Last 24 hours")
        page.screenshot(path=str(ARTIFACTS / "staff-admin-after-enrolment.png"), full_page=True)
        browser.close()
