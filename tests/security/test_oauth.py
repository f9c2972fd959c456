"""The OAuth 2.1 provider over real HTTP: discovery, registration, PKCE, refresh rotation, revocation."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application

from apps.security.models import SecurityEvent
from apps.security.services import client_disable, token_verify
from tests.security.oauth_flow import REDIRECT_URI, Browser, exchange, full_flow, pkce_pair, register, register_service


def _verify(base_url: str, raw: str) -> Any:
    return token_verify(raw_token=raw, resource=f"{base_url}/mcp")


def _consented_code(live_site: str, client: dict[str, Any], challenge: str) -> str:
    browser = Browser.logged_in(live_site, "alice")
    return browser.consent(browser.authorize_page(client["client_id"], challenge))["code"][0]


def _is_json_error(response: httpx2.Response, status: int, error: str) -> str:
    """The token endpoint's error as RFC 6749 section 5.2 has it: JSON, typed as JSON, not to be cached."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json()["error"] == error
    return response.json().get("error_description", "")


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


# --- Discovery --------------------------------------------------------------------------------------------------


def test_authorization_server_metadata_names_every_endpoint(live_site: str) -> None:
    response = httpx2.get(f"{live_site}/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    meta = response.json()
    assert meta["issuer"] == live_site
    assert meta["authorization_endpoint"] == f"{live_site}/o/authorize/"
    assert meta["token_endpoint"] == f"{live_site}/o/token/"
    assert meta["registration_endpoint"] == f"{live_site}/o/register/"
    assert meta["revocation_endpoint"] == f"{live_site}/o/revoke_token/"
    assert meta["introspection_endpoint"] == f"{live_site}/o/introspect/"
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["response_types_supported"] == ["code"]
    assert set(meta["grant_types_supported"]) == {"authorization_code", "refresh_token", "client_credentials"}
    assert meta["scopes_supported"] == ["music21:admin", "music21:read", "music21:write"]
    assert response.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("path", ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"])
def test_protected_resource_metadata_points_at_this_server(live_site: str, path: str) -> None:
    meta = httpx2.get(f"{live_site}{path}").json()
    assert meta["resource"] == f"{live_site}/mcp"
    assert meta["authorization_servers"] == [live_site]
    assert meta["bearer_methods_supported"] == ["header"]
    assert "music21:read" in meta["scopes_supported"]


# --- Registration -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "error", "named"),
    [
        ({"redirect_uris": ["http://evil.example/cb"]}, "invalid_redirect_uri", "http://evil.example/cb"),
        ({"redirect_uris": ["https://app.example/cb#frag"]}, "invalid_redirect_uri", "fragment"),
        ({"redirect_uris": ["ftp://app.example/cb"]}, "invalid_redirect_uri", "https"),
        ({"redirect_uris": ["https://app.example/cb\x00"]}, "invalid_redirect_uri", "control character"),
        ({"redirect_uris": ["https://app.example/c%zz"]}, "invalid_redirect_uri", "percent-encoding"),
        ({"redirect_uris": []}, "invalid_client_metadata", "redirect_uris is required"),
        ({"grant_types": ["implicit"]}, "invalid_client_metadata", "implicit"),
        ({"grant_types": ["password"]}, "invalid_client_metadata", "password"),
        ({"grant_types": ["urn:ietf:params:oauth:grant-type:device_code"]}, "invalid_client_metadata", "device_code"),
        ({"grant_types": ["client_credentials"]}, "invalid_client_metadata", "for confidential clients"),
        ({"response_types": ["token"]}, "invalid_client_metadata", "response type"),
        ({"client_name": ["x"]}, "invalid_client_metadata", "client_name must be a string"),
        ({"client_name": 5}, "invalid_client_metadata", "client_name must be a string"),
        ({"client_name": "x" * 256}, "invalid_client_metadata", "client_name is 256 characters"),
    ],
)
def test_bad_registrations_are_refused_with_the_reason(
    live_site: str, metadata: dict[str, Any], error: str, named: str
) -> None:
    body = {"client_name": "x", "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none", **metadata}
    response = httpx2.post(f"{live_site}/o/register/", json=body)
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert named in response.json()["error_description"]
    assert not Application.objects.exists()


def test_a_body_too_large_to_read_is_refused_in_json_naming_the_limit(live_site: str, settings: Any) -> None:
    # Django refuses a body past DATA_UPLOAD_MAX_MEMORY_SIZE when it is read: the answer is still the endpoint's
    # own JSON error (RFC 7591 section 3.2.2, RFC 6749 section 5.2), not Django's bare HTML "Bad Request (400)".
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    uris = [f"https://app.example/{n}" for n in range(1000)]
    registration = httpx2.post(f"{live_site}/o/register/", json={"client_name": "x", "redirect_uris": uris})
    assert registration.status_code == 400
    assert registration.headers["Content-Type"] == "application/json"
    assert registration.headers["Access-Control-Allow-Origin"] == "*"  # a browser client can read why
    assert registration.json()["error"] == "invalid_client_metadata"
    assert "larger than the 10,000 bytes" in registration.json()["error_description"]
    assert not Application.objects.exists()
    token = httpx2.post(f"{live_site}/o/token/", data={"grant_type": "client_credentials", "scope": "a" * 20_000})
    assert "larger than the 10,000 bytes" in _is_json_error(token, 400, "invalid_request")
    # Revocation (RFC 7009 section 2.2.1) and introspection answer their errors in the same JSON.
    for endpoint in ("/o/revoke_token/", "/o/introspect/"):
        answer = httpx2.post(f"{live_site}{endpoint}", data={"token": "a" * 20_000}, auth=("someone", "secret"))
        assert "larger than the 10,000 bytes" in _is_json_error(answer, 400, "invalid_request"), endpoint


@pytest.mark.parametrize("separator", [" ", "\n", "\t", "\r"], ids=["space", "newline", "tab", "return"])
def test_a_redirect_uri_hidden_behind_whitespace_is_refused(live_site: str, alice: Any, separator: str) -> None:
    smuggled = f"https://a.example/cb{separator}http://evil.example/cb"
    body = {"client_name": "x", "redirect_uris": [smuggled], "token_endpoint_auth_method": "none"}
    response = httpx2.post(f"{live_site}/o/register/", json=body)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_redirect_uri"
    assert f"{smuggled!r} contains whitespace" in response.json()["error_description"]
    assert not Application.objects.filter(name="x").exists()


def test_a_redirect_uri_smuggled_in_before_registration_refused_it_is_not_followed(live_site: str, alice: Any) -> None:
    client = register(live_site)
    # What registration stored for ["http://127.0.0.1:9/callback http://evil.example/cb"] before it looked for
    # whitespace: two redirect URIs, one of them never checked.
    smuggled = "http://evil.example/cb"
    Application.objects.filter(client_id=client["client_id"]).update(redirect_uris=f"{REDIRECT_URI} {smuggled}")
    browser = Browser.logged_in(live_site, "alice")
    page = browser.authorize_page(client["client_id"], pkce_pair()[1], redirect_uri=smuggled)
    assert page.status_code == 400 and "location" not in page.headers
    assert browser.authorize_page(client["client_id"], pkce_pair()[1]).status_code == 200  # the one it may use


NESTED_TOO_DEEPLY = (
    '{"client_name": "T", "redirect_uris": ["https://a.example/cb"], "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
)


def test_a_registration_or_update_nested_too_deeply_is_refused_as_malformed(live_site: str) -> None:
    client = register(live_site)
    headers = {"Content-Type": "application/json"}
    manage = {**headers, "Authorization": f"Bearer {client['registration_access_token']}"}
    for response in (
        httpx2.post(f"{live_site}/o/register/", content=NESTED_TOO_DEEPLY, headers=headers),
        httpx2.put(client["registration_client_uri"], content=NESTED_TOO_DEEPLY, headers=manage),
    ):
        assert response.status_code == 400
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["error"] == "invalid_client_metadata"
        assert "nested too deeply" in response.json()["error_description"]
    assert Application.objects.get(client_id=client["client_id"]).redirect_uris == REDIRECT_URI
    assert Application.objects.count() == 1


def test_a_registered_client_appears_for_administrators(live_site: str) -> None:
    client = register(live_site, client_name="Claude test")
    application = Application.objects.get(client_id=client["client_id"])
    assert application.name == "Claude test"
    assert application.client_type == "public"
    assert application.policy.registration_ip == "127.0.0.1"
    assert client["redirect_uris"] == [REDIRECT_URI]


def test_registration_is_rate_limited_per_address(live_site: str, settings: Any) -> None:
    settings.OAUTH_REGISTRATIONS_PER_HOUR = 2
    register(live_site)
    register(live_site)
    response = httpx2.post(
        f"{live_site}/o/register/", json={"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}
    )
    assert response.status_code == 429
    assert 0 < int(response.headers["Retry-After"]) <= 3600


def test_registrations_refused_for_their_metadata_do_not_count_toward_the_limit(live_site: str, settings: Any) -> None:
    settings.OAUTH_REGISTRATIONS_PER_HOUR = 2
    for mistake in (
        {"redirect_uris": []},  # refused by django-oauth-toolkit: required for the authorization code
        {"token_endpoint_auth_method": "private_key_jwt"},
        {"grant_types": ["refresh_token"]},
        {"redirect_uris": ["http://evil.example/cb"]},  # refused by the platform's rules
    ):
        for _ in range(2):
            body = {"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none", **mistake}
            refused = httpx2.post(f"{live_site}/o/register/", json=body)
            assert refused.status_code == 400, refused.text
    register(live_site)  # the corrected request
    register(live_site)
    response = httpx2.post(
        f"{live_site}/o/register/", json={"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"}
    )
    assert response.status_code == 429  # registrations that happen still meet the limit
    assert Application.objects.count() == 2


def test_a_confidential_client_gets_a_secret_that_works_for_client_credentials(live_site: str) -> None:
    client = register_service(live_site)
    assert client["client_secret"]
    # RFC 7591 section 3.2.1: required with a secret; 0 is "does not expire", which this server's secrets do not.
    assert client["client_secret_expires_at"] == 0
    token = httpx2.post(
        f"{live_site}/o/token/",
        data={"grant_type": "client_credentials", "scope": "music21:read"},
        auth=(client["client_id"], client["client_secret"]),
    )
    assert token.status_code == 200, token.text
    verified = _verify(live_site, token.json()["access_token"])
    assert verified is not None and verified.user_id is None  # a token for the client itself, no user
    wrong = httpx2.post(
        f"{live_site}/o/token/", data={"grant_type": "client_credentials"}, auth=(client["client_id"], "nope")
    )
    assert wrong.status_code == 401
    # RFC 6749 section 5.2: the challenge is in the scheme the client authenticated with; the token endpoint takes
    # no bearer token, so a Bearer challenge named a way in that does not exist.
    assert wrong.json()["error"] == "invalid_client"
    assert wrong.headers["WWW-Authenticate"] == 'Basic realm="token"'
    posted = httpx2.post(
        f"{live_site}/o/token/",
        data={"grant_type": "client_credentials", "client_id": client["client_id"], "client_secret": "nope"},
    )
    assert posted.status_code == 401
    assert posted.json()["error"] == "invalid_client"
    assert "WWW-Authenticate" not in posted.headers


def test_a_registrations_answers_holding_its_credentials_are_not_to_be_cached(live_site: str) -> None:
    # The registration and its reads and updates (RFC 7592) carry the client secret and the registration access
    # token: like a token response (RFC 6749 section 5.1), no cache on the way may keep them.
    body = {"client_name": "x", "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "client_secret_post"}
    registered = httpx2.post(f"{live_site}/o/register/", json=body)
    assert registered.status_code == 201
    assert registered.json()["client_secret"]
    assert registered.headers["Cache-Control"] == "no-store"
    client = registered.json()
    manage = {"Authorization": f"Bearer {client['registration_access_token']}"}
    read = httpx2.get(client["registration_client_uri"], headers=manage)
    assert read.status_code == 200 and read.json()["registration_access_token"]
    assert read.headers["Cache-Control"] == "no-store"
    updated = httpx2.put(client["registration_client_uri"], json=body, headers=manage)
    assert updated.status_code == 200 and updated.json()["registration_access_token"]
    assert updated.headers["Cache-Control"] == "no-store"


# --- The authorization-code flow --------------------------------------------------------------------------------


def test_the_full_flow_gives_a_token_for_the_user_and_scopes(live_site: str, alice: Any) -> None:
    tokens = full_flow(live_site)
    verified = _verify(live_site, tokens["access_token"])
    assert verified is not None
    assert verified.user_id == alice.pk
    assert verified.scopes == {"music21:read", "music21:write"}
    assert verified.resource == f"{live_site}/mcp"
    assert tokens["token_type"] == "Bearer"
    assert 3500 <= tokens["expires_in"] <= 3600


def test_the_consent_page_names_the_client_and_explains_the_scopes(live_site: str, alice: Any) -> None:
    client = register(live_site, client_name="Helpful Assistant")
    page = Browser.logged_in(live_site, "alice").authorize_page(client["client_id"], pkce_pair()[1])
    assert page.status_code == 200
    assert "Helpful Assistant" in page.text
    assert "See your scores and run analyses" in page.text
    assert "Import new scores" in page.text
    assert 'href="/static/css/site.css"' in page.text


def test_denying_consent_sends_the_client_an_access_denied(live_site: str, alice: Any) -> None:
    client = register(live_site)
    browser = Browser.logged_in(live_site, "alice")
    query = browser.consent(browser.authorize_page(client["client_id"], pkce_pair()[1]), allow=False)
    assert query["error"] == ["access_denied"]
    assert "code" not in query


def test_the_implicit_response_type_is_answered_unsupported_response_type(live_site: str, alice: Any) -> None:
    # RFC 6749 section 4.1.2.1: the server offers no implicit grant to anyone, which is unsupported_response_type
    # (not unauthorized_client, "this client may not"), in the query like every answer of the code flow.
    client = register(live_site)
    browser = Browser.logged_in(live_site, "alice")
    answer = browser.authorize_page(client["client_id"], pkce_pair()[1], response_type="token")
    assert answer.status_code == 302
    location = urlsplit(answer.headers["location"])
    assert not location.fragment
    query = parse_qs(location.query)
    assert query["error"] == ["unsupported_response_type"]
    assert query["state"] == ["st4te"] and query["iss"] == [live_site]


@pytest.mark.parametrize(
    "extra",
    [{"code_challenge": "x" * 43, "code_challenge_method": "plain"}, {}],
    ids=["plain", "missing"],
)
def test_pkce_plain_or_missing_is_refused(live_site: str, alice: Any, extra: dict[str, str]) -> None:
    client = register(live_site)
    browser = Browser.logged_in(live_site, "alice")
    page = browser.authorize_page(client["client_id"], None, **extra)
    location = page.headers.get("location", "")
    assert page.status_code >= 400 or "cannot be authorised" in page.text or "error=" in location
    assert "code=" not in location
    assert not AccessToken.objects.filter(user=alice).exists()


@pytest.mark.parametrize(
    "challenge",
    ["abc", "!" * 43, pkce_pair()[1] + "A", pkce_pair()[1] + "="],
    ids=["short", "outside-base64url", "long", "padded"],
)
def test_a_code_challenge_that_is_no_s256_challenge_is_refused_on_the_page(
    live_site: str, alice: Any, challenge: str
) -> None:
    client = register(live_site)
    page = Browser.logged_in(live_site, "alice").authorize_page(client["client_id"], challenge)
    assert page.status_code == 400 and "location" not in page.headers
    assert "invalid_request" in page.text and "The code_challenge must be the S256 challenge" in page.text
    assert 'name="allow"' not in page.text


@pytest.mark.parametrize("verifier", ["abc", "!" * 48, "a" * 129], ids=["short", "outside-the-set", "long"])
def test_a_malformed_code_verifier_is_refused_even_with_its_own_challenge(
    live_site: str, alice: Any, verifier: str
) -> None:
    client = register(live_site)
    code = _consented_code(live_site, client, _s256(verifier))  # a challenge of the right form, made from it
    described = _is_json_error(exchange(live_site, client["client_id"], code, verifier), 400, "invalid_request")
    assert "The code_verifier must be 43 to 128 characters" in described
    assert f"({len(verifier)} characters)" in described
    assert not AccessToken.objects.filter(user=alice).exists()


def test_a_wrong_verifier_is_refused(live_site: str, alice: Any) -> None:
    client = register(live_site)
    _, challenge = pkce_pair()
    browser = Browser.logged_in(live_site, "alice")
    code = browser.consent(browser.authorize_page(client["client_id"], challenge))["code"][0]
    response = exchange(live_site, client["client_id"], code, pkce_pair()[0])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_a_code_used_twice_is_refused_and_its_tokens_revoked(live_site: str, alice: Any) -> None:
    tokens = full_flow(live_site)
    assert _verify(live_site, tokens["access_token"]) is not None
    again = exchange(live_site, tokens["client_id"], tokens["code"], tokens["verifier"])
    assert again.status_code == 400
    assert _verify(live_site, tokens["access_token"]) is None
    refresh = httpx2.post(
        f"{live_site}/o/token/",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": tokens["client_id"],
        },
    )
    assert refresh.status_code == 400


def test_refresh_rotates_and_a_used_refresh_token_is_refused(live_site: str, alice: Any) -> None:
    tokens = full_flow(live_site)

    def refresh(token: str) -> httpx2.Response:
        return httpx2.post(
            f"{live_site}/o/token/",
            data={"grant_type": "refresh_token", "refresh_token": token, "client_id": tokens["client_id"]},
        )

    first = refresh(tokens["refresh_token"])
    assert first.status_code == 200, first.text
    assert first.json()["refresh_token"] != tokens["refresh_token"]
    assert _verify(live_site, first.json()["access_token"]) is not None
    replay = refresh(tokens["refresh_token"])
    assert replay.status_code == 400
    # Reuse of a rotated token revokes the family: the newer tokens stop working too.
    assert _verify(live_site, first.json()["access_token"]) is None


def test_a_redirect_uri_mismatch_is_refused(live_site: str, alice: Any) -> None:
    client = register(live_site)
    browser = Browser.logged_in(live_site, "alice")
    page = browser.authorize_page(client["client_id"], pkce_pair()[1], redirect_uri="http://127.0.0.1:9/other")
    assert page.status_code == 400 or "cannot be authorised" in page.text
    assert "location" not in page.headers


def test_the_password_grant_is_refused(live_site: str, alice: Any) -> None:
    client = register(live_site)
    response = httpx2.post(
        f"{live_site}/o/token/",
        data={
            "grant_type": "password",
            "username": "alice",
            "password": "correct horse battery staple",
            "client_id": client["client_id"],
        },
    )
    # Named for what it is, as RFC 6749 section 5.2 has it, and not a wrong client secret: the request was honest
    # about an unoffered grant, and its address is charged with nothing.
    assert "password grant is not offered" in _is_json_error(response, 400, "unsupported_grant_type")
    assert not AccessToken.objects.filter(user=alice).exists()
    assert not SecurityEvent.objects.filter(kind="auth_failure").exists()


def test_a_token_for_another_resource_cannot_be_obtained(live_site: str, alice: Any) -> None:
    client = register(live_site)
    _, challenge = pkce_pair()
    browser = Browser.logged_in(live_site, "alice")
    page = browser.authorize_page(client["client_id"], challenge, resource="https://evil.example/mcp")
    assert page.status_code == 400
    assert "invalid_target" in page.text and "https://evil.example/mcp" in page.text


@pytest.mark.parametrize("resource", ["https://evil.example/", "api"], ids=["elsewhere", "not-authorized"])
def test_a_code_exchanged_for_another_resource_is_a_json_invalid_target(
    live_site: str, alice: Any, resource: str
) -> None:
    client = register(live_site)
    verifier, challenge = pkce_pair()
    code = _consented_code(live_site, client, challenge)  # authorized for {live_site}/mcp
    asked = live_site if resource == "api" else resource
    described = _is_json_error(
        exchange(live_site, client["client_id"], code, verifier, resource=asked), 400, "invalid_target"
    )
    assert asked in described
    assert not AccessToken.objects.filter(user=alice).exists()


def test_every_token_endpoint_error_is_json(live_site: str, alice: Any) -> None:
    client = register(live_site)
    verifier, challenge = pkce_pair()
    code = _consented_code(live_site, client, challenge)
    token_url = f"{live_site}/o/token/"
    _is_json_error(exchange(live_site, client["client_id"], code, pkce_pair()[0]), 400, "invalid_grant")
    _is_json_error(httpx2.post(token_url, data={"grant_type": "magic"}), 400, "unsupported_grant_type")
    # django-oauth-toolkit's device flow is not offered here; its grant type reached a 500 page
    device = "urn:ietf:params:oauth:grant-type:device_code"
    for data in ({"grant_type": device}, {"grant_type": device, "device_code": "x", "client_id": client["client_id"]}):
        _is_json_error(httpx2.post(token_url, data=data), 400, "unsupported_grant_type")
    _is_json_error(
        httpx2.post(token_url, data={"grant_type": "client_credentials"}, auth=(client["client_id"], "guess")),
        401,
        "invalid_client",
    )
    assert exchange(live_site, client["client_id"], code, verifier).status_code == 200  # none of it used the code


def test_a_token_recorded_for_another_resource_is_refused(live_site: str, alice: Any) -> None:
    tokens = full_flow(live_site)
    row = AccessToken.objects.get(token_checksum=hashlib.sha256(tokens["access_token"].encode()).hexdigest())
    row.resource = ["https://other.example/mcp"]
    row.save()
    assert _verify(live_site, tokens["access_token"]) is None


def test_an_expired_token_is_refused(live_site: str, alice: Any) -> None:
    tokens = full_flow(live_site)
    AccessToken.objects.filter(user=alice).update(expires=timezone.now() - timedelta(seconds=1))
    assert _verify(live_site, tokens["access_token"]) is None


def test_a_revoked_token_is_refused(live_site: str, alice: Any) -> None:
    tokens = full_flow(live_site)
    response = httpx2.post(
        f"{live_site}/o/revoke_token/",
        data={"token": tokens["access_token"], "client_id": tokens["client_id"]},
    )
    assert response.status_code == 200
    assert _verify(live_site, tokens["access_token"]) is None


def test_a_wrong_secret_at_revocation_is_challenged_only_in_the_scheme_the_client_used(live_site: str) -> None:
    # RFC 6749 section 5.2, which RFC 7009 section 2.2.1 refers to: the revocation endpoint takes client
    # credentials, never a bearer token, so a Bearer challenge named a way in that does not exist.
    client = register_service(live_site)
    basic = httpx2.post(f"{live_site}/o/revoke_token/", data={"token": "any"}, auth=(client["client_id"], "nope"))
    assert basic.status_code == 401 and basic.json()["error"] == "invalid_client"
    assert basic.headers["WWW-Authenticate"] == 'Basic realm="revocation"'
    posted = httpx2.post(
        f"{live_site}/o/revoke_token/",
        data={"token": "any", "client_id": client["client_id"], "client_secret": "nope"},
    )
    assert posted.status_code == 401 and posted.json()["error"] == "invalid_client"
    assert "WWW-Authenticate" not in posted.headers  # no browser answers it with a password prompt


def test_a_disabled_client_loses_its_tokens_and_cannot_get_new_ones(live_site: str, alice: Any) -> None:
    tokens = full_flow(live_site)
    client_disable(application=Application.objects.get(client_id=tokens["client_id"]), reason="test")
    assert _verify(live_site, tokens["access_token"]) is None
    browser = Browser.logged_in(live_site, "alice")
    page = browser.authorize_page(tokens["client_id"], pkce_pair()[1])
    assert page.status_code == 400 or "cannot be authorised" in page.text


def test_a_browser_tool_on_localhost_may_read_the_token_response(live_site: str, alice: Any) -> None:
    client = register(live_site)
    verifier, challenge = pkce_pair()
    browser = Browser.logged_in(live_site, "alice")
    code = browser.consent(browser.authorize_page(client["client_id"], challenge))["code"][0]
    response = httpx2.post(
        f"{live_site}/o/token/",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "client_id": client["client_id"],
            "code_verifier": verifier,
        },
        headers={"Origin": "http://localhost:6274"},  # the MCP Inspector's page
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:6274"
    # Its refusals too, those answered before the library sees the request among them: the tool can show why.
    for data in ({"grant_type": "password"}, {"grant_type": "refresh_token", "refresh_token": "gone"}):
        refused = httpx2.post(f"{live_site}/o/token/", data=data, headers={"Origin": "http://localhost:6274"})
        assert refused.status_code in (400, 401)
        assert refused.headers["Access-Control-Allow-Origin"] == "http://localhost:6274"
    # And the tool can revoke the token when it is done with it (RFC 7009), its preflight answered.
    preflight = httpx2.options(
        f"{live_site}/o/revoke_token/",
        headers={"Origin": "http://localhost:6274", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://localhost:6274"
    revoked = httpx2.post(
        f"{live_site}/o/revoke_token/",
        data={"token": response.json()["access_token"], "client_id": client["client_id"]},
        headers={"Origin": "http://localhost:6274"},
    )
    assert revoked.status_code == 200
    assert revoked.headers["Access-Control-Allow-Origin"] == "http://localhost:6274"
    assert (
        httpx2.post(
            f"{live_site}/mcp", json={}, headers={"Authorization": f"Bearer {response.json()['access_token']}"}
        ).status_code
        == 401
    )


# --- Credentials under attack -----------------------------------------------------------------------------------


def _login_token(http: httpx2.Client) -> str:
    page = http.get("/accounts/login/")
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)


def test_a_sign_in_form_older_than_the_sign_in_is_refused_on_a_page_that_says_what_to_do(
    live_site: str, alice: Any
) -> None:
    # Two tabs on the sign-in page: signing in on one renews the CSRF token, so the other's form is refused.
    http = httpx2.Client(base_url=live_site)
    older_tab = _login_token(http)
    signed_in = http.post(
        "/accounts/login/",
        data={
            "username": "alice",
            "password": "correct horse battery staple",
            "csrfmiddlewaretoken": _login_token(http),
        },
    )
    assert signed_in.status_code == 302
    refused = http.post(
        "/accounts/login/",
        data={"username": "alice", "password": "correct horse battery staple", "csrfmiddlewaretoken": older_tab},
    )
    assert refused.status_code == 403
    assert "This form has expired" in refused.text
    assert "reload the page" in refused.text
    # In the site's look, under its Content-Security-Policy: Django's own page is styled inline, which the policy
    # (style-src 'self') makes the browser refuse.
    assert 'href="/static/css/site.css"' in refused.text
    assert "<style" not in refused.text and "style=" not in refused.text


def test_repeated_failed_sign_ins_lock_the_account_from_that_address(live_site: str, alice: Any, settings: Any) -> None:
    from apps.security.models import SecurityEvent

    http = httpx2.Client(base_url=live_site)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        http.post(
            "/accounts/login/",
            data={"username": "alice", "password": "wrong", "csrfmiddlewaretoken": _login_token(http)},
        )
    locked = http.post(
        "/accounts/login/",
        data={
            "username": "alice",
            "password": "correct horse battery staple",
            "csrfmiddlewaretoken": _login_token(http),
        },
    )
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.text
    assert SecurityEvent.objects.filter(kind="login_failure", ip="127.0.0.1").count() >= settings.AXES_FAILURE_LIMIT
    assert SecurityEvent.objects.filter(kind="blocked", detail__lockout="login").exists()


def test_a_wrong_client_secret_is_recorded_and_a_blocked_address_is_refused(live_site: str, settings: Any) -> None:
    from apps.security.models import SecurityEvent

    settings.SECURITY_BLOCK_THRESHOLD = 3
    client = register_service(live_site)
    for _ in range(3):
        response = httpx2.post(
            f"{live_site}/o/token/", data={"grant_type": "client_credentials"}, auth=(client["client_id"], "guess")
        )
        assert response.status_code == 401
    assert SecurityEvent.objects.filter(kind="auth_failure", detail__endpoint="/o/token/").count() == 3
    # The client the sender named in its Basic credentials is kept for administrators to see (never counted).
    named = SecurityEvent.objects.filter(kind="auth_failure").values_list("detail__named_client_id", flat=True)
    assert set(named) == {client["client_id"]}
    refused = httpx2.post(
        f"{live_site}/o/token/",
        data={"grant_type": "client_credentials"},
        auth=(client["client_id"], client["client_secret"]),
    )
    assert refused.status_code == 403
    assert "blocked until" in refused.json()["error_description"]
    assert httpx2.post(f"{live_site}/o/register/", json={"redirect_uris": [REDIRECT_URI]}).status_code == 403


def test_a_verified_token_is_remembered_until_anything_revokes_it(alice: Any, token_for: Any) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from oauth2_provider.models import AccessToken

    from apps.security.services import token_verify

    raw = token_for(alice)
    resource = f"{django_settings.PUBLIC_URL}/mcp"
    assert token_verify(raw_token=raw, resource=resource) is not None
    with CaptureQueriesContext(connection) as queries:
        assert token_verify(raw_token=raw, resource=resource) is not None
    assert len(queries) == 0  # the hot path does not touch the database
    AccessToken.objects.get(user=alice).revoke()  # what /o/revoke_token/ does
    assert token_verify(raw_token=raw, resource=resource) is None


def test_a_token_not_remembered_is_checked_in_one_query_with_every_refusal(
    alice: Any, bob: Any, token_for: Any
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.security.models import ClientPolicy
    from apps.security.services import token_authenticate, token_epoch_bump

    resource = f"{django_settings.PUBLIC_URL}/mcp"
    raw, other = token_for(alice), token_for(bob)
    with CaptureQueriesContext(connection) as queries:
        verified, user = token_authenticate(raw_token=raw, resource=resource)
        assert user == alice and user.email == "alice@example.com"  # the whole user, no query later for a field
    assert verified.user_id == alice.pk
    assert len(queries) == 1, [query["sql"] for query in queries]
    bob.is_active = False
    bob.save()
    assert token_authenticate(raw_token=other, resource=resource)[1] is None  # acts for no one now
    # disabled without revoking its tokens (client_disable does both): the check itself refuses them
    application = AccessToken.objects.get(user=alice).application
    ClientPolicy.objects.update_or_create(application=application, defaults={"disabled": True})
    token_epoch_bump()
    assert token_authenticate(raw_token=raw, resource=resource) is None


def test_the_event_loop_answers_a_remembered_token_and_nothing_else(alice: Any, bob: Any, token_for: Any) -> None:
    import anyio

    from apps.security.services import token_authenticate, token_authenticate_remembered, token_epoch_async

    resource = f"{django_settings.PUBLIC_URL}/mcp"
    raw, other = token_for(alice), token_for(bob)

    def remembered(token: str) -> Any:
        epoch = anyio.run(token_epoch_async)
        assert epoch is not None  # the memory cache, or Redis under CI: both readable from the event loop
        return token_authenticate_remembered(raw_token=token, resource=resource, epoch=epoch)

    assert remembered(raw) is None  # never verified in this process: a worker thread must ask the database
    verified, user = token_authenticate(raw_token=raw, resource=resource)
    assert remembered(raw) == (verified, user) and user == alice
    assert remembered(other) is None
    assert token_authenticate_remembered(raw_token=raw, resource=f"{resource}-elsewhere", epoch=0) is None
    bob.is_active = False
    bob.save()  # any change to any user bumps the epoch
    assert remembered(raw) is None
    assert token_authenticate(raw_token=raw, resource=resource) is not None
    AccessToken.objects.get(user=alice).revoke()
    assert remembered(raw) is None
    assert token_authenticate(raw_token=raw, resource=resource) is None


def test_with_redis_unreachable_the_event_loop_leaves_tokens_to_the_worker_thread(monkeypatch: Any) -> None:
    import anyio

    from apps.core.cache import RedisCache
    from apps.security import services
    from tests.support import free_port

    unreachable = RedisCache(f"redis://127.0.0.1:{free_port()}/0", {})
    monkeypatch.setattr(services, "caches", {"default": unreachable})
    monkeypatch.setattr(services, "_async_epoch_unreadable_until", [0.0])
    assert anyio.run(services.token_epoch_async) is None  # refused: no epoch, so nothing remembered is trusted
    assert services._async_epoch_unreadable_until[0] > 0  # and Redis is left alone for a while
    assert anyio.run(services.token_epoch_async) is None


def test_with_redis_unreachable_the_event_loop_says_so_once_not_at_each_retry(
    monkeypatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    import anyio

    from apps.core.cache import RedisCache
    from apps.security import services
    from tests.support import free_port

    unreachable = RedisCache(f"redis://127.0.0.1:{free_port()}/0", {})
    monkeypatch.setattr(services, "caches", {"default": unreachable})
    monkeypatch.setattr(services, "_async_epoch_unreadable_until", [0.0])
    monkeypatch.setattr(services, "RETRY_AFTER_FAILURE", 0.0)  # each read asks Redis, as one every 5 s does

    async def calls_at_once() -> None:
        async with anyio.create_task_group() as calls:
            for _ in range(5):
                calls.start_soon(services.token_epoch_async)

    with caplog.at_level(logging.WARNING, logger="apps.security.services"):
        for _ in range(3):
            anyio.run(calls_at_once)
    said = [record.getMessage() for record in caplog.records if "token epoch" in record.getMessage()]
    # Before: once by every call waiting on the failed reply, and again at every retry (28 lines in 13 s of a
    # frozen Redis, from two serving processes).
    assert len(said) == 1, said


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="epochs are pushed to each process through Redis")
def test_the_event_loop_knows_the_epoch_without_asking_redis_and_hears_a_bump_at_once(monkeypatch: Any) -> None:
    import time

    import anyio
    from django.core.cache import cache, caches

    from apps.security import services

    deadline = time.monotonic() + 10  # the subscription is started by the first read, in its own thread
    while services._pushed_epoch(caches["default"]) is None:
        assert time.monotonic() < deadline, "the subscription to the token epoch did not come up"
        time.sleep(0.02)

    def no_round_trip(*args: Any) -> Any:
        raise AssertionError("the event loop asked Redis for the epoch")

    monkeypatch.setattr(services, "async_redis", no_round_trip)
    assert anyio.run(services.token_epoch_async) == cache.get(services.TOKEN_EPOCH_KEY)
    before = cache.get(services.TOKEN_EPOCH_KEY)
    services.token_epoch_bump()  # what revoking a token does
    after = cache.get(services.TOKEN_EPOCH_KEY)
    assert after != before
    assert anyio.run(services.token_epoch_async) == after  # already known here, still without asking Redis
