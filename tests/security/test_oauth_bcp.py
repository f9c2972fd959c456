"""RFC 9700 (the OAuth security best current practice) as `manage.py check --deploy` and clients see it: the
issuer in every authorization response (RFC 9207), and no deploy warning but the one loopback redirect URIs need."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from django.core import checks

from apps.security.oauth_settings import oauth2_provider_settings
from tests.security.oauth_flow import Browser, pkce_pair, register


def test_the_metadata_says_authorization_responses_carry_the_issuer(live_site: str) -> None:
    meta = httpx2.get(f"{live_site}/.well-known/oauth-authorization-server").json()
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert meta["issuer"] == live_site


@pytest.mark.parametrize("allow", [True, False], ids=["consent", "denial"])
def test_an_authorization_response_names_the_issuer(live_site: str, alice: Any, allow: bool) -> None:
    client = register(live_site)
    browser = Browser.logged_in(live_site, "alice")

    query = browser.consent(browser.authorize_page(client["client_id"], pkce_pair()[1]), allow=allow)

    assert ("code" in query) is allow
    assert query.get("error") == (None if allow else ["access_denied"])
    assert query["iss"] == [live_site]  # once, and the metadata's issuer: a denial too (RFC 9207 section 2)
    assert query["state"] == ["st4te"]


@pytest.mark.parametrize("public_url", ["https://music21.example.org", "http://127.0.0.1:8000"])
def test_the_deploy_checks_leave_only_the_loopback_redirect_warning(settings: Any, public_url: str) -> None:
    settings.DEBUG = False
    settings.PUBLIC_URL = public_url
    settings.OAUTH2_PROVIDER = oauth2_provider_settings(public_url)

    found = [m for m in checks.run_checks(include_deployment_checks=True) if m.id.startswith("oauth2_provider.")]

    # W008: http redirect URIs are allowed at all, which native MCP clients need for their loopback callback
    # (RFC 8252); registration and metadata documents allow http only on loopback (docs/security.md).
    assert [(m.id, m.level) for m in found] == [("oauth2_provider.W008", checks.WARNING)]
