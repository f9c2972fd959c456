"""Who gets which token for what, tried the way a reviewer tried to break it: over real HTTP, through the flow."""

from __future__ import annotations

import html
import re
from typing import Any

import httpx2
import pytest
from django.contrib.auth.hashers import check_password
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application

from apps.compliance.models import AuditEvent, DataSubjectRequest
from apps.security.models import ClientPolicy
from tests.mcp_bridge.conftest import INITIALIZE, MCP_HEADERS
from tests.security.oauth_flow import (
    REDIRECT_URI,
    Browser,
    _hidden_fields,
    exchange,
    full_flow,
    pkce_pair,
    register,
    register_service,
)
from tests.support import signed_in, superuser, totp_device, totp_device_add

REPORT = {"report_type": "soc2", "start_date": "2026-01-01", "end_date": "2026-01-02"}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _mcp(live_site: str, token: str) -> httpx2.Response:
    return httpx2.post(f"{live_site}/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **_bearer(token)})


def _staff(user: Any, is_staff: bool = True) -> None:
    user.is_staff = is_staff
    user.save()
    if is_staff and totp_device(user) is None:
        totp_device_add(user)


def _text(page: httpx2.Response) -> str:
    """The page's words as a person reads them: no tags, entities decoded, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", page.text)).split())


def _authorized(live_site: str, username: str, scope: str, resource: str) -> dict[str, Any]:
    """Register, log in, consent to what the page offers, exchange: the token response and the client."""
    client = register(live_site)
    verifier, challenge = pkce_pair()
    browser = Browser.logged_in(live_site, username)
    page = browser.authorize_page(client["client_id"], challenge, scope=scope, resource=resource)
    code = browser.consent(page)["code"][0]
    response = exchange(live_site, client["client_id"], code, verifier, resource=resource)
    assert response.status_code == 200, response.text
    return {**response.json(), "client_id": client["client_id"]}


def _refresh(live_site: str, tokens: dict[str, Any], **extra: str) -> httpx2.Response:
    return httpx2.post(
        f"{live_site}/o/token/",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": tokens["client_id"],
            **extra,
        },
    )


# --- music21:admin is for staff, on every path ----------------------------------------------------------------


def test_a_person_without_staff_rights_is_not_offered_admin_and_cannot_use_operator_apis(
    live_site: str, bob: Any
) -> None:
    client = register(live_site)
    verifier, challenge = pkce_pair()
    browser = Browser.logged_in(live_site, "bob")
    page = browser.authorize_page(
        client["client_id"], challenge, scope="music21:read music21:admin", resource=live_site
    )
    assert page.status_code == 200
    text = _text(page)
    assert "See your scores and run analyses" in text
    assert "Everything above, plus the server's operational statistics" not in text  # admin is not offered
    assert "It also asked for music21:admin, which only staff can grant: it will not get it." in text
    assert _hidden_fields(page.text)["scope"] == "music21:read"

    code = browser.consent(page)["code"][0]
    response = exchange(live_site, client["client_id"], code, verifier, resource=live_site)
    assert response.status_code == 200 and response.json()["scope"] == "music21:read"
    token = response.json()["access_token"]
    stats = httpx2.get(f"{live_site}/server_stats", headers=_bearer(token))
    assert stats.status_code == 403 and "music21:admin" in stats.json()["message"]
    report = httpx2.post(f"{live_site}/compliance/report", json=REPORT, headers=_bearer(token))
    assert report.status_code == 403


def test_a_token_without_the_scope_an_api_needs_is_told_which_in_its_challenge(
    live_site: str, alice: Any, token_for: Any
) -> None:
    _staff(alice)
    token = token_for(alice, "music21:read", resource="api")
    erasure = {"kind": "erasure", "password": "correct horse battery staple"}
    for method, path, body, needed in (
        ("GET", "/server_stats", None, "music21:admin"),
        ("POST", "/compliance/report", REPORT, "music21:admin"),
        ("POST", "/privacy/api/requests/", erasure, "music21:write"),
    ):
        response = httpx2.request(method, f"{live_site}{path}", json=body, headers=_bearer(token))
        assert response.status_code == 403, path
        message = f"This needs the {needed} scope, which the token was not granted."
        assert response.json()["error"] == "insufficient_scope" and response.json()["message"] == message
        assert response.headers["WWW-Authenticate"] == (
            f'Bearer realm="api",error="insufficient_scope",error_description="{message}",scope="{needed}"'
        )
    assert not DataSubjectRequest.objects.exists()


def test_a_consent_form_altered_to_add_admin_is_refused(live_site: str, bob: Any) -> None:
    client = register(live_site)
    browser = Browser.logged_in(live_site, "bob")
    page = browser.authorize_page(client["client_id"], pkce_pair()[1], scope="music21:read music21:admin")
    fields = {**_hidden_fields(page.text), "scope": "music21:read music21:admin", "allow": "Authorize"}
    response = browser.http.post("/o/authorize/", data=fields)
    assert response.status_code == 302
    assert response.headers["location"].startswith(REDIRECT_URI)
    assert "error=invalid_scope" in response.headers["location"] and "code=" not in response.headers["location"]
    assert not AccessToken.objects.filter(user=bob).exists()


def test_asking_only_for_admin_without_staff_rights_is_refused_on_the_page(live_site: str, bob: Any) -> None:
    client = register(live_site)
    browser = Browser.logged_in(live_site, "bob")
    page = browser.authorize_page(client["client_id"], pkce_pair()[1], scope="music21:admin")
    assert page.status_code == 200
    text = _text(page)
    assert "It asks only for permissions your account cannot grant (music21:admin" in text
    assert "nothing to allow" in text
    assert 'name="allow"' not in page.text  # no Allow button
    query = browser.consent(page, allow=False)  # its one button: back to the application
    assert query["error"] == ["access_denied"] and "code" not in query
    assert not AccessToken.objects.filter(user=bob).exists()


def test_staff_are_offered_admin_and_can_use_the_operator_apis(live_site: str, alice: Any) -> None:
    _staff(alice)
    tokens = _authorized(live_site, "alice", "music21:read music21:admin", live_site)
    assert tokens["scope"] == "music21:read music21:admin"
    assert httpx2.get(f"{live_site}/server_stats", headers=_bearer(tokens["access_token"])).status_code == 200
    report = httpx2.post(f"{live_site}/compliance/report", json=REPORT, headers=_bearer(tokens["access_token"]))
    assert report.status_code == 200, report.text


def test_staff_rights_withdrawn_before_the_code_exchange_leave_admin_out_of_the_token(
    live_site: str, alice: Any
) -> None:
    _staff(alice)
    client = register(live_site)
    verifier, challenge = pkce_pair()
    browser = Browser.logged_in(live_site, "alice")
    page = browser.authorize_page(
        client["client_id"], challenge, scope="music21:read music21:admin", resource=live_site
    )
    code = browser.consent(page)["code"][0]
    _staff(alice, False)
    response = exchange(live_site, client["client_id"], code, verifier, resource=live_site)
    assert response.status_code == 200 and response.json()["scope"] == "music21:read"
    stats = httpx2.get(f"{live_site}/server_stats", headers=_bearer(response.json()["access_token"]))
    assert stats.status_code == 403


def test_a_refresh_neither_keeps_nor_regains_admin_once_staff_rights_are_withdrawn(live_site: str, alice: Any) -> None:
    _staff(alice)
    tokens = _authorized(live_site, "alice", "music21:read music21:admin", live_site)
    _staff(alice, False)
    # The admin token still live from before is no use to a person who is no longer staff either.
    assert httpx2.get(f"{live_site}/server_stats", headers=_bearer(tokens["access_token"])).status_code == 403

    again = _refresh(live_site, tokens, scope="music21:read music21:admin")
    assert again.status_code == 400 and again.json()["error"] == "invalid_scope"
    refreshed = _refresh(live_site, tokens)
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["scope"] == "music21:read"
    stats = httpx2.get(f"{live_site}/server_stats", headers=_bearer(refreshed.json()["access_token"]))
    assert stats.status_code == 403


def test_client_credentials_never_get_admin(live_site: str, alice: Any) -> None:
    client = register_service(live_site)
    credentials = (client["client_id"], client["client_secret"])
    token_url = f"{live_site}/o/token/"
    refused = httpx2.post(
        token_url, data={"grant_type": "client_credentials", "scope": "music21:admin"}, auth=credentials
    )
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"
    # Not even a client an administrator created for a staff member: a client acts for no person.
    _staff(alice)
    Application.objects.filter(client_id=client["client_id"]).update(user=alice, registration_source="manual")
    refused = httpx2.post(
        token_url, data={"grant_type": "client_credentials", "scope": "music21:admin"}, auth=credentials
    )
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"
    plain = httpx2.post(token_url, data={"grant_type": "client_credentials"}, auth=credentials)
    assert plain.status_code == 200 and plain.json()["scope"] == "music21:read"


# --- RFC 7592 updates obey registration's rules ----------------------------------------------------------------


def _manage(live_site: str, client: dict[str, Any], method: str, **kwargs: Any) -> httpx2.Response:
    headers = _bearer(client["registration_access_token"])
    return httpx2.request(method, client["registration_client_uri"], headers=headers, **kwargs)


@pytest.mark.parametrize(
    ("change", "error", "named"),
    [
        ({"redirect_uris": ["http://evil.example.com/cb"]}, "invalid_redirect_uri", "http://evil.example.com/cb"),
        ({"redirect_uris": ["https://a.example/cb http://evil.example/cb"]}, "invalid_redirect_uri", "whitespace"),
        ({"grant_types": ["password"]}, "invalid_client_metadata", "password"),
        ({"grant_types": ["implicit"]}, "invalid_client_metadata", "implicit"),
        ({"grant_types": ["client_credentials"]}, "invalid_client_metadata", "for confidential clients"),
        ({"response_types": ["token"]}, "invalid_client_metadata", "response type"),
    ],
)
def test_a_registration_update_obeys_the_registration_rules(
    live_site: str, change: dict[str, Any], error: str, named: str
) -> None:
    client = register(live_site)
    metadata = {
        "client_name": "Test assistant",
        "redirect_uris": [REDIRECT_URI],
        "token_endpoint_auth_method": "none",
        **change,
    }
    response = _manage(live_site, client, "PUT", json=metadata)
    assert response.status_code == 400
    assert response.json()["error"] == error and named in response.json()["error_description"]
    application = Application.objects.get(client_id=client["client_id"])
    assert application.redirect_uris == REDIRECT_URI
    assert application.authorization_grant_type == Application.GRANT_AUTHORIZATION_CODE
    assert AuditEvent.objects.filter(action="oauth.client_updated", outcome="refused").exists()


def test_registration_management_is_audited(live_site: str) -> None:
    client = register(live_site)
    assert _manage(live_site, client, "GET").json()["client_id"] == client["client_id"]
    updated = _manage(
        live_site,
        client,
        "PUT",
        json={
            "client_name": "Renamed",
            "redirect_uris": ["https://app.example.com/cb"],
            "token_endpoint_auth_method": "none",
        },
    )
    assert updated.status_code == 200, updated.text
    assert Application.objects.get(client_id=client["client_id"]).redirect_uris == "https://app.example.com/cb"
    client["registration_access_token"] = updated.json()["registration_access_token"]  # rotated on update
    assert _manage(live_site, client, "DELETE").status_code == 204
    assert not Application.objects.filter(client_id=client["client_id"]).exists()
    recorded = AuditEvent.objects.filter(client_id=client["client_id"]).values_list("action", "outcome")
    assert {
        ("oauth.client_read", "success"),
        ("oauth.client_updated", "success"),
        ("oauth.client_deleted", "success"),
    } <= set(recorded)


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_a_public_client_updated_to_a_confidential_method_gets_a_secret_that_works(live_site: str, method: str) -> None:
    client = register(live_site)  # public: token_endpoint_auth_method "none"
    assert "client_secret" not in client
    updated = _manage(
        live_site,
        client,
        "PUT",
        json={
            "client_name": "Now a service",
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": method,
        },
    )
    assert updated.status_code == 200, updated.text
    secret = updated.json().get("client_secret")
    assert secret, updated.json()
    assert updated.json()["client_secret_expires_at"] == 0  # RFC 7591 section 3.2.1: required with a secret
    application = Application.objects.get(client_id=client["client_id"])
    assert application.client_type == Application.CLIENT_CONFIDENTIAL
    assert application.client_secret != secret and check_password(secret, application.client_secret)  # hashed
    assert AuditEvent.objects.filter(
        action="oauth.client_secret_rotated", target=f"client:{client['client_id']}"
    ).exists()
    credentials: dict[str, Any] = (
        {"auth": (client["client_id"], secret)}
        if method == "client_secret_basic"
        else {"data": {"client_id": client["client_id"], "client_secret": secret}}
    )
    data = {"grant_type": "client_credentials", "scope": "music21:read", **credentials.pop("data", {})}
    token = httpx2.post(f"{live_site}/o/token/", data=data, **credentials)
    assert token.status_code == 200, token.text
    assert token.json()["scope"] == "music21:read"
    # The secret is shown once: reading the registration does not show it again.
    client["registration_access_token"] = updated.json()["registration_access_token"]  # rotated on update
    assert "client_secret" not in _manage(live_site, client, "GET").json()


def test_a_confidential_client_updated_to_none_is_public_and_its_old_secret_no_longer_works(
    live_site: str, alice: Any
) -> None:
    client = register(live_site, token_endpoint_auth_method="client_secret_basic")
    old_secret = client["client_secret"]
    updated = _manage(
        live_site,
        client,
        "PUT",
        json={"client_name": "Now public", "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"},
    )
    assert updated.status_code == 200, updated.text
    assert "client_secret" not in updated.json() and updated.json()["token_endpoint_auth_method"] == "none"
    assert Application.objects.get(client_id=client["client_id"]).client_type == Application.CLIENT_PUBLIC
    verifier, challenge = pkce_pair()
    browser = Browser.logged_in(live_site, "alice")
    code = browser.consent(browser.authorize_page(client["client_id"], challenge))["code"][0]
    with_old_secret = httpx2.post(
        f"{live_site}/o/token/",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
            "resource": f"{live_site}/mcp",
        },
        auth=(client["client_id"], old_secret),
    )
    assert with_old_secret.status_code == 401, with_old_secret.text
    assert with_old_secret.json()["error"] == "invalid_client"
    # As a public client it gets its token with PKCE alone.
    assert exchange(live_site, client["client_id"], code, verifier).status_code == 200


def test_guessing_registration_tokens_gets_the_address_blocked_from_managing_registrations(
    live_site: str, settings: Any
) -> None:
    settings.SECURITY_BLOCK_THRESHOLD = 3
    client = register(live_site)
    guesser = {**client, "registration_access_token": "guess"}
    for _ in range(3):
        assert _manage(live_site, guesser, "GET").status_code == 401
    for method in ("GET", "PUT", "DELETE"):
        refused = _manage(live_site, client, method, json={"redirect_uris": [REDIRECT_URI]})
        assert refused.status_code == 403 and "blocked until" in refused.json()["error_description"]
    assert Application.objects.filter(client_id=client["client_id"]).exists()
    assert AuditEvent.objects.filter(action="oauth.client_deleted", outcome="refused").exists()


# --- Introspection is for trusted resource servers --------------------------------------------------------------


def _introspect(live_site: str, token: str, **kwargs: Any) -> httpx2.Response:
    return httpx2.post(f"{live_site}/o/introspect/", data={"token": token}, **kwargs)


def _introspection_token(client_id: str) -> str:
    """A bearer token with DOT's `introspection` scope for the client, as an administrator could make one."""
    from datetime import timedelta

    from oauth2_provider.models import set_token_value

    token = AccessToken(
        application=Application.objects.get(client_id=client_id),
        scope="introspection",
        expires=timezone.now() + timedelta(hours=1),
    )
    set_token_value(token, f"introspection-{client_id}")
    token.save()
    return f"introspection-{client_id}"


def test_a_self_registered_confidential_client_cannot_introspect_anyones_token(live_site: str, alice: Any) -> None:
    tokens = _authorized(live_site, "alice", "music21:read", f"{live_site}/mcp")
    snoop = register_service(live_site)
    for refused in (
        _introspect(live_site, tokens["access_token"], auth=(snoop["client_id"], snoop["client_secret"])),
        _introspect(live_site, tokens["access_token"], headers=_bearer(_introspection_token(snoop["client_id"]))),
    ):
        assert refused.status_code == 401
        assert refused.json()["error"] == "invalid_client"
        assert "resource servers an administrator of this server trusts" in refused.json()["error_description"]
        assert "alice" not in refused.text and "active" not in refused.json()


def test_a_resource_server_an_administrator_trusts_may_introspect(live_site: str, alice: Any) -> None:
    tokens = _authorized(live_site, "alice", "music21:read", f"{live_site}/mcp")
    trusted = register_service(live_site)
    application = Application.objects.get(client_id=trusted["client_id"])
    admin = signed_in(superuser())
    change_page = admin.get(f"/admin/oauth2_provider/application/{application.pk}/change/").text
    assert 'name="policy-0-may_introspect"' in change_page and "May introspect tokens" in change_page
    ClientPolicy.objects.filter(application=application).update(may_introspect=True)  # the box ticked there

    answer = _introspect(live_site, tokens["access_token"], auth=(trusted["client_id"], trusted["client_secret"]))
    assert answer.status_code == 200, answer.text
    assert answer.json()["active"] is True and answer.json()["username"] == "alice"
    assert answer.json()["scope"] == "music21:read" and answer.json()["aud"] == [f"{live_site}/mcp"]
    by_bearer = _introspect(
        live_site, tokens["access_token"], headers=_bearer(_introspection_token(trusted["client_id"]))
    )
    assert by_bearer.status_code == 200 and by_bearer.json()["username"] == "alice"


def test_introspection_takes_the_token_in_a_post_body_never_in_the_url(live_site: str, alice: Any) -> None:
    # RFC 7662 section 2.1: POST. A token in the URL is written to every access log on the way.
    tokens = _authorized(live_site, "alice", "music21:read", f"{live_site}/mcp")
    trusted = register_service(live_site)
    ClientPolicy.objects.filter(application__client_id=trusted["client_id"]).update(may_introspect=True)
    in_url = httpx2.get(
        f"{live_site}/o/introspect/",
        params={"token": tokens["access_token"]},
        auth=(trusted["client_id"], trusted["client_secret"]),
    )
    assert in_url.status_code == 405, in_url.text
    assert in_url.headers["Allow"] == "POST, OPTIONS"
    assert in_url.json()["error"] == "invalid_request" and "POST" in in_url.json()["error_description"]
    assert "alice" not in in_url.text and "active" not in in_url.json()
    posted = _introspect(live_site, tokens["access_token"], auth=(trusted["client_id"], trusted["client_secret"]))
    assert posted.status_code == 200 and posted.json()["username"] == "alice"


# --- The consent page is always shown ---------------------------------------------------------------------------


def test_the_metadata_advertises_the_introspection_methods_a_trusted_resource_server_can_use(
    live_site: str, alice: Any
) -> None:
    meta = httpx2.get(f"{live_site}/.well-known/oauth-authorization-server").json()
    advertised = meta["introspection_endpoint_auth_methods_supported"]
    assert advertised == ["client_secret_basic", "client_secret_post", "Bearer"]
    assert "none" in meta["token_endpoint_auth_methods_supported"]  # where public clients do authenticate so
    tokens = _authorized(live_site, "alice", "music21:read", f"{live_site}/mcp")
    trusted = register_service(live_site)
    ClientPolicy.objects.filter(application__client_id=trusted["client_id"]).update(may_introspect=True)
    credentials = {"client_id": trusted["client_id"], "client_secret": trusted["client_secret"]}
    answers = {
        "client_secret_basic": _introspect(live_site, tokens["access_token"], auth=tuple(credentials.values())),
        "client_secret_post": httpx2.post(
            f"{live_site}/o/introspect/", data={"token": tokens["access_token"], **credentials}
        ),
        "Bearer": _introspect(
            live_site, tokens["access_token"], headers=_bearer(_introspection_token(trusted["client_id"]))
        ),
    }
    for method in advertised:
        assert answers[method].status_code == 200 and answers[method].json()["active"] is True, method
    unauthenticated = httpx2.post(
        f"{live_site}/o/introspect/", data={"token": tokens["access_token"], "client_id": tokens["client_id"]}
    )
    assert unauthenticated.status_code == 401  # what "none" would be


def test_approval_prompt_auto_does_not_skip_the_consent_of_someone_who_approved_before(
    live_site: str, alice: Any
) -> None:
    client = register(live_site)
    verifier, challenge = pkce_pair()
    browser = Browser.logged_in(live_site, "alice")
    code = browser.consent(browser.authorize_page(client["client_id"], challenge))["code"][0]
    assert exchange(live_site, client["client_id"], code, verifier).status_code == 200  # approved once

    again = browser.authorize_page(client["client_id"], pkce_pair()[1], approval_prompt="auto")
    assert again.status_code == 200 and "location" not in again.headers  # no code sent back without asking
    assert "to use your account?" in again.text and 'name="allow"' in again.text


# --- A registration access token is not an access token ---------------------------------------------------------


def test_a_registration_access_token_opens_neither_mcp_nor_any_api(live_site: str, alice: Any) -> None:
    client = register(live_site)
    token = client["registration_access_token"]
    assert _mcp(live_site, token).status_code == 401
    for path in ("/server_stats", "/privacy/api/inventory"):
        response = httpx2.get(f"{live_site}{path}", headers=_bearer(token))
        assert response.status_code == 401, path
        assert "registration access token" in response.json()["message"]
    assert _manage(live_site, client, "GET").status_code == 200  # it still manages its registration


# --- Audiences: the MCP endpoint and the HTTP APIs are two resources --------------------------------------------


def test_a_token_for_the_mcp_endpoint_is_refused_by_the_apis_and_says_why(
    live_site: str, alice: Any, token_for: Any
) -> None:
    _staff(alice)
    token = token_for(alice, "music21:read music21:admin")  # bound to /mcp, as MCP clients ask
    assert _mcp(live_site, token).status_code == 200
    for method, path in (("GET", "/server_stats"), ("POST", "/compliance/report"), ("GET", "/privacy/api/inventory")):
        response = httpx2.request(method, f"{live_site}{path}", json=REPORT, headers=_bearer(token))
        assert response.status_code == 401, path
        message = response.json()["message"]
        assert f"issued for {live_site}/mcp" in message and f"resource={live_site}." in message
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_a_token_for_the_apis_works_there_and_is_refused_at_mcp(live_site: str, alice: Any, token_for: Any) -> None:
    _staff(alice)
    token = token_for(alice, "music21:read music21:admin", resource="api")
    assert httpx2.get(f"{live_site}/server_stats", headers=_bearer(token)).status_code == 200
    assert httpx2.get(f"{live_site}/privacy/api/inventory", headers=_bearer(token)).status_code == 200
    assert _mcp(live_site, token).status_code == 401


def test_a_person_gets_a_token_for_the_apis_through_the_flow(live_site: str, alice: Any) -> None:
    tokens = _authorized(live_site, "alice", "music21:read", live_site)
    inventory = httpx2.get(f"{live_site}/privacy/api/inventory", headers=_bearer(tokens["access_token"]))
    assert inventory.status_code == 200 and inventory.json()["status"] == "success"
    assert _mcp(live_site, tokens["access_token"]).status_code == 401


def test_a_token_issued_without_a_resource_works_at_both(live_site: str, alice: Any, token_for: Any) -> None:
    token = token_for(alice, resource=None)
    assert _mcp(live_site, token).status_code == 200
    assert httpx2.get(f"{live_site}/privacy/api/inventory", headers=_bearer(token)).status_code == 200


def test_a_disabled_accounts_tokens_open_no_api_and_cannot_be_refreshed(
    live_site: str, alice: Any, token_for: Any
) -> None:
    # An administrator unticks "Active": the person can no longer sign in, and what their applications hold stops
    # working too (at /mcp, a call is refused as no_user).
    api_token = token_for(alice, resource="api")
    flow = full_flow(live_site)
    assert httpx2.get(f"{live_site}/privacy/api/inventory", headers=_bearer(api_token)).status_code == 200
    alice.is_active = False
    alice.save()
    refused = httpx2.get(f"{live_site}/privacy/api/inventory", headers=_bearer(api_token))
    assert refused.status_code == 401
    assert "disabled" in refused.json()["message"]
    request = httpx2.post(f"{live_site}/privacy/api/requests/", headers=_bearer(api_token), json={"kind": "export"})
    assert request.status_code == 401
    assert not DataSubjectRequest.objects.exists()
    refresh = httpx2.post(
        f"{live_site}/o/token/",
        data={"grant_type": "refresh_token", "refresh_token": flow["refresh_token"], "client_id": flow["client_id"]},
    )
    assert refresh.status_code == 400
    assert refresh.json()["error"] == "invalid_grant"
    assert AccessToken.objects.filter(user=alice).count() == 2  # the two above, and no new one


# --- What the consent page names --------------------------------------------------------------------------------


def test_the_consent_page_says_a_self_registered_app_is_unverified_and_where_it_returns(
    live_site: str, alice: Any
) -> None:
    client = register(live_site, client_name="Totally Official Music21 App")
    page = Browser.logged_in(live_site, "alice").authorize_page(client["client_id"], pkce_pair()[1])
    text = _text(page)
    assert "Allow Totally Official Music21 App to use your account?" in text
    assert "This application registered itself: its name was chosen by whoever registered it" in text
    assert "you will be sent back to 127.0.0.1 (a program on your own computer)" in text
    assert "registered by an administrator" not in text


def test_the_consent_page_says_an_administrator_registered_the_app_and_names_its_host(
    live_site: str, alice: Any
) -> None:
    application = Application.objects.create(
        name="Library catalogue",
        client_type=Application.CLIENT_PUBLIC,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris="https://catalogue.example.org/oauth/back",
        registration_source=Application.RegistrationSource.MANUAL,
    )
    page = Browser.logged_in(live_site, "alice").authorize_page(
        application.client_id, pkce_pair()[1], redirect_uri="https://catalogue.example.org/oauth/back"
    )
    text = _text(page)
    assert page.status_code == 200, text
    assert "This application was registered by an administrator of this server." in text
    assert "you will be sent back to catalogue.example.org." in text
    assert "registered itself" not in text


def test_staff_see_the_admin_scope_explained_on_the_consent_page(live_site: str, alice: Any) -> None:
    _staff(alice)
    client = register(live_site)
    page = Browser.logged_in(live_site, "alice").authorize_page(
        client["client_id"], pkce_pair()[1], scope="music21:read music21:admin"
    )
    text = _text(page)
    assert "music21:adminEverything above, plus the server's operational statistics" in text
    assert "only staff can grant" not in text
