"""Guessing credentials, wherever they are checked: each wrong guess is a security event charged to the address
that sent it, and the address is refused once blocked (apps.security.events). Over real HTTP, as an attacker
would send them."""

from __future__ import annotations

import html
import re
from datetime import UTC
from typing import Any

import httpx2
import pytest

from apps.security.events import block_lift
from apps.security.models import Block, ClientPolicy, SecurityEvent
from tests.security.oauth_flow import PASSWORDS, REDIRECT_URI, register, register_service


def _client_token(live_site: str, client: dict[str, Any]) -> str:
    answer = httpx2.post(
        f"{live_site}/o/token/",
        data={"grant_type": "client_credentials", "scope": "music21:read"},
        auth=(client["client_id"], client["client_secret"]),
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


# --- Wrong client secrets at revocation and introspection -------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["/o/revoke_token/", "/o/introspect/"])
@pytest.mark.parametrize("sent_as", ["basic", "post"])
def test_wrong_client_secrets_get_the_address_blocked_and_never_the_client(
    live_site: str, settings: Any, endpoint: str, sent_as: str
) -> None:
    settings.SECURITY_BLOCK_THRESHOLD = 3
    client = register_service(live_site)
    # Introspection answers only a resource server an administrator trusts: its secret is the one worth guessing.
    ClientPolicy.objects.filter(application__client_id=client["client_id"]).update(may_introspect=True)
    token = _client_token(live_site, client)
    for count, guess in enumerate(("guess-1", "guess-2", "guess-3"), start=1):
        if sent_as == "basic":
            answer = httpx2.post(f"{live_site}{endpoint}", data={"token": token}, auth=(client["client_id"], guess))
        else:
            answer = httpx2.post(
                f"{live_site}{endpoint}",
                data={"token": token, "client_id": client["client_id"], "client_secret": guess},
            )
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"] == "invalid_client"
        # Blocked at the threshold, not before.
        assert Block.objects.filter(target=Block.Target.IP, value="127.0.0.1").exists() == (count == 3)
    failures = SecurityEvent.objects.filter(kind="auth_failure", detail__endpoint=endpoint)
    assert failures.count() == 3
    # As at /o/token/: charged to the address; the client named is kept for administrators, never counted.
    assert set(failures.values_list("ip", "client_id", "detail__named_client_id")) == {
        ("127.0.0.1", "", client["client_id"])
    }
    assert Block.objects.filter(target=Block.Target.IP, value="127.0.0.1").exists()
    assert not Block.objects.filter(target=Block.Target.CLIENT).exists()
    assert SecurityEvent.objects.filter(kind="blocked", ip="127.0.0.1").exists()
    # The blocked address is refused here, even with the right secret, as at /o/token/ ...
    refused = httpx2.post(
        f"{live_site}{endpoint}", data={"token": token}, auth=(client["client_id"], client["client_secret"])
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"] == "access_denied"
    assert "blocked until" in refused.json()["error_description"]
    assert refused.headers["Cache-Control"] == "no-store"
    # ... and at /o/token/.
    at_token = httpx2.post(
        f"{live_site}/o/token/",
        data={"grant_type": "client_credentials"},
        auth=(client["client_id"], client["client_secret"]),
    )
    assert at_token.status_code == 403
    # The client itself is not blocked: once the address's block is lifted, its secret works again.
    for block in Block.objects.filter(target=Block.Target.IP, value="127.0.0.1"):
        block_lift(block=block)
    assert _client_token(live_site, client)


def test_an_untrusted_client_refused_introspection_with_its_right_secret_is_not_guessing(
    live_site: str, settings: Any
) -> None:
    # Its answer is the same 401 whatever secret it sends, so no guess can be tested there; an honest resource
    # server not yet trusted by an administrator must not get its address blocked for asking.
    settings.SECURITY_BLOCK_THRESHOLD = 3
    client = register_service(live_site)
    token = _client_token(live_site, client)
    for _ in range(4):
        answer = httpx2.post(
            f"{live_site}/o/introspect/", data={"token": token}, auth=(client["client_id"], client["client_secret"])
        )
        assert answer.status_code == 401
        assert "resource servers an administrator of this server trusts" in answer.json()["error_description"]
    assert not SecurityEvent.objects.filter(kind="auth_failure").exists()
    assert not Block.objects.exists()


# --- Password spraying: one address, one wrong password each for many usernames ----------------------------------

SPRAYED = ["alice", "bob", "carol", "dave", "erin", "frank"]


def _form_token(page: httpx2.Response) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def _sign_in(http: httpx2.Client, path: str, username: str, password: str, token: str) -> httpx2.Response:
    return http.post(path, data={"username": username, "password": password, "csrfmiddlewaretoken": token})


def _text(page: httpx2.Response) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.text)).split())


def _refused_as_blocked(page: httpx2.Response, until: str) -> None:
    assert page.status_code == 429, page.text[:500]
    assert int(page.headers["Retry-After"]) > 0
    words = _text(page)
    assert "Too many failed sign-ins came from this address" in words
    assert f"until {until}" in words
    # In the site's look, under its Content-Security-Policy (no inline style).
    assert 'href="/static/css/site.css"' in page.text and "style=" not in page.text


def test_password_spraying_from_one_address_pauses_sign_in_there_and_locks_out_no_username(
    live_site: str, alice: Any, bob: Any, settings: Any
) -> None:
    settings.SECURITY_BLOCK_THRESHOLD = len(SPRAYED)  # fewer than the usernames tried, more than axes' limit
    assert settings.AXES_FAILURE_LIMIT > 1  # each username is tried once: axes alone never locks any of them
    client = register(live_site)  # before the address is blocked, which would refuse its registration
    sprayer = httpx2.Client(base_url=live_site)
    page = sprayer.get("/accounts/login/")
    for username in SPRAYED:
        page = _sign_in(sprayer, "/accounts/login/", username, "Winter2026!", _form_token(page))
        assert page.status_code == 200 and "didn't match" in page.text  # the form again, with its error
    failures = SecurityEvent.objects.filter(kind="login_failure", ip="127.0.0.1")
    assert failures.count() == len(SPRAYED)
    assert not SecurityEvent.objects.filter(kind="blocked", detail__lockout="login").exists()  # no axes lockout
    block = Block.objects.get(target=Block.Target.IP, value="127.0.0.1")
    until = block.until.astimezone(UTC).strftime("%H:%M:%S UTC")

    # From that address even the right password is refused, on a page that says why and until when ...
    refused = _sign_in(sprayer, "/accounts/login/", "alice", PASSWORDS["alice"], _form_token(page))
    _refused_as_blocked(refused, until)
    assert "sessionid" not in sprayer.cookies
    _refused_as_blocked(sprayer.get("/accounts/login/"), until)
    # ... as is the sign-in an application's authorization request leads to ...
    authorize = sprayer.get(
        "/o/authorize/",
        params={"response_type": "code", "client_id": client["client_id"], "redirect_uri": REDIRECT_URI},
    )
    assert authorize.status_code == 302 and authorize.headers["location"].startswith("/accounts/login/?next=")
    _refused_as_blocked(sprayer.get(authorize.headers["location"]), until)
    # ... and the admin's.
    _refused_as_blocked(sprayer.get("/admin/login/"), until)
    admin_refused = _sign_in(sprayer, "/admin/login/", "alice", PASSWORDS["alice"], _form_token(page))
    _refused_as_blocked(admin_refused, until)
    assert failures.count() == len(SPRAYED)  # refused before any password is checked: nothing more counted

    # The usernames are not locked: from another address alice and bob sign in.
    for username in ("alice", "bob"):
        elsewhere = httpx2.Client(base_url=live_site, transport=httpx2.HTTPTransport(local_address="127.0.0.2"))
        signed_in = _sign_in(
            elsewhere, "/accounts/login/", username, PASSWORDS[username], _form_token(elsewhere.get("/accounts/login/"))
        )
        assert signed_in.status_code == 302, signed_in.text[:500]
        assert "sessionid" in elsewhere.cookies
