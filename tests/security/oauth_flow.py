"""A browser-less OAuth client for tests: registration, login, consent and token exchange over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
from django.contrib.auth import get_user_model

from tests.support import totp_code, totp_device

REDIRECT_URI = "http://127.0.0.1:9/callback"
PASSWORDS = {"alice": "correct horse battery staple", "bob": "tr0ub4dor&3 but longer"}


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def register(base_url: str, **metadata: Any) -> dict[str, Any]:
    body = {
        "client_name": "Test assistant",
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        **metadata,
    }
    response = httpx2.post(f"{base_url}/o/register/", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def register_service(base_url: str) -> dict[str, Any]:
    """Register a service: a confidential client of the client_credentials grant, with no redirect URI, that
    authenticates with its secret in Basic credentials."""
    return register(
        base_url, grant_types=["client_credentials"], token_endpoint_auth_method="client_secret_basic", redirect_uris=[]
    )


def _hidden_fields(html: str) -> dict[str, str]:
    fields = {}
    for tag in re.findall(r"<input[^>]+>", html):
        name = re.search(r'name="([^"]+)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name and 'type="hidden"' in tag:
            fields[name.group(1)] = value.group(1) if value else ""
    return fields


@dataclass
class Browser:
    """A logged-in user agent: cookies, CSRF, and the consent form."""

    base_url: str
    http: httpx2.Client

    @classmethod
    def logged_in(cls, base_url: str, username: str) -> Browser:
        http = httpx2.Client(base_url=base_url, follow_redirects=False)
        page = http.get("/accounts/login/")
        token = _hidden_fields(page.text)["csrfmiddlewaretoken"]
        response = http.post(
            "/accounts/login/",
            data={"username": username, "password": PASSWORDS[username], "csrfmiddlewaretoken": token},
        )
        assert response.status_code == 302, "login failed"
        device = totp_device(get_user_model().objects.get_by_natural_key(username))
        if device is not None:  # staff give the code from their app too
            page = http.get("/accounts/second-factor/")
            token = _hidden_fields(page.text)["csrfmiddlewaretoken"]
            response = http.post(
                "/accounts/second-factor/", data={"otp_token": totp_code(device), "csrfmiddlewaretoken": token}
            )
            assert response.status_code == 302, "the second factor was refused"
        return cls(base_url, http)

    def authorize_page(self, client_id: str, challenge: str | None, **extra: str) -> httpx2.Response:
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "music21:read music21:write",
            "state": "st4te",
            "resource": f"{self.base_url}/mcp",
            **({"code_challenge": challenge, "code_challenge_method": "S256"} if challenge else {}),
            **extra,
        }
        return self.http.get("/o/authorize/", params={k: v for k, v in params.items() if v is not None})

    def consent(self, page: httpx2.Response, *, allow: bool = True) -> dict[str, list[str]]:
        """Submit the consent form; returns the query of the redirect back to the client."""
        fields = _hidden_fields(page.text)
        if allow:
            fields["allow"] = "Authorize"
        response = self.http.post("/o/authorize/", data=fields)
        assert response.status_code == 302, response.text[:500]
        location = response.headers["location"]
        assert location.startswith(REDIRECT_URI)
        return parse_qs(urlsplit(location).query)


def exchange(base_url: str, client_id: str, code: str, verifier: str, **extra: str) -> httpx2.Response:
    return httpx2.post(
        f"{base_url}/o/token/",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "client_id": client_id,
            "code_verifier": verifier,
            "resource": f"{base_url}/mcp",
            **extra,
        },
    )


def full_flow(base_url: str, username: str = "alice") -> dict[str, Any]:
    """Register, log in, consent, exchange: the tokens, plus the client and verifier used."""
    client = register(base_url)
    verifier, challenge = pkce_pair()
    browser = Browser.logged_in(base_url, username)
    query = browser.consent(browser.authorize_page(client["client_id"], challenge))
    response = exchange(base_url, client["client_id"], query["code"][0], verifier)
    assert response.status_code == 200, response.text
    return {**response.json(), "client_id": client["client_id"], "code": query["code"][0], "verifier": verifier}
