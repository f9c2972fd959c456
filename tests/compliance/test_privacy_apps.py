"""A person sees on /privacy/ the applications she authorised and revokes one: its tokens stop working at once,
it is no longer listed, and the revocation is audited. Real OAuth flows against the live site."""

from __future__ import annotations

import re
from typing import Any

import httpx2
from django.test import Client
from oauth2_provider.models import AccessToken, Grant, RefreshToken

from apps.compliance.models import AuditEvent, SubjectKey
from apps.security.selectors import applications_authorised
from apps.tools.invocation import Caller, invoke_tool
from tests.security.oauth_flow import Browser, exchange, full_flow, pkce_pair, register
from tests.support import signed_in


def _mcp_status(live_site: str, token: str) -> int:
    response = httpx2.post(
        f"{live_site}/mcp",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"},
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
    )
    return response.status_code


def _refresh_status(live_site: str, tokens: dict[str, Any]) -> int:
    response = httpx2.post(
        f"{live_site}/o/token/",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": tokens["client_id"],
        },
    )
    return response.status_code


def _listed(page: str) -> list[str]:
    return re.findall(r'<p class="app-name">([^<]+)</p>', page)


def test_the_consent_page_links_to_where_the_permission_is_withdrawn(live_site: str, alice: Any) -> None:
    client = register(live_site)
    page = Browser.logged_in(live_site, "alice").authorize_page(client["client_id"], pkce_pair()[1])
    assert re.search(r'withdraw this permission at any time from\s+<a href="/privacy/#applications">', page.text)


def test_a_person_sees_her_application_and_revoking_it_ends_its_access(
    live_site: str, alice: Any, bob: Any, chorale: Any
) -> None:
    tokens = full_flow(live_site, "alice")  # "Test assistant", allowed read and write on the consent page
    # bob allows the same application: revoking it for alice leaves him his access.
    verifier, challenge = pkce_pair()
    bobs_browser = Browser.logged_in(live_site, "bob")
    code = bobs_browser.consent(bobs_browser.authorize_page(tokens["client_id"], challenge))["code"][0]
    bobs = exchange(live_site, tokens["client_id"], code, verifier).json()
    assert _mcp_status(live_site, tokens["access_token"]) == 200
    # A tool call through the application marks its last use.
    invoke_tool(
        "score_info",
        {"score_id": "chorale"},
        caller=Caller(user=alice, scopes=frozenset({"music21:read"}), client_id=tokens["client_id"]),
    )
    called = AuditEvent.objects.get(action="tool.score_info")

    browser = signed_in(alice)
    page = browser.get("/privacy/").content.decode()
    assert _listed(page) == ["Test assistant"]
    assert re.findall(r'<code title="[^"]+">(music21:\w+)</code>', page) == ["music21:read", "music21:write"]
    assert '<strong data-category="oauth_clients">1</strong>' in page
    [listed] = applications_authorised(user=alice)
    assert listed.scopes == ("music21:read", "music21:write")
    assert listed.last_used == called.created_at and listed.first_authorised <= listed.last_used
    assert f'last used <time datetime="{called.created_at.isoformat()}">' in page

    application = AccessToken.objects.get(user=alice).application
    response = browser.post(f"/privacy/applications/{application.pk}/revoke", follow=True)
    page = response.content.decode()
    assert "Test assistant can no longer use your account" in page
    assert _listed(page) == [] and "No application can use your account" in page

    # Its old bearer token is refused at /mcp, its refresh token gets no new one, and nothing of it is left live.
    assert _mcp_status(live_site, tokens["access_token"]) == 401
    assert _refresh_status(live_site, tokens) == 400
    assert not AccessToken.objects.filter(user=alice).exists()
    assert not RefreshToken.objects.filter(user=alice, revoked__isnull=True).exists()
    assert not Grant.objects.filter(user=alice).exists()
    # bob still has his.
    assert _mcp_status(live_site, bobs["access_token"]) == 200
    assert [entry.name for entry in applications_authorised(user=bob)] == ["Test assistant"]

    revoked = AuditEvent.objects.get(action="oauth.application_revoked")
    assert revoked.actor == SubjectKey.objects.get(user=alice).pseudonym
    assert revoked.client_id == tokens["client_id"] and revoked.outcome == "success"
    assert revoked.detail == {"refresh_tokens": 1, "access_tokens": 0, "grants": 0}

    # Revoking again finds nothing to revoke, and says so.
    again = browser.post(f"/privacy/applications/{application.pk}/revoke", follow=True).content.decode()
    assert "holds no permission from you" in again
    assert AuditEvent.objects.filter(action="oauth.application_revoked").count() == 1


def test_a_pending_authorization_code_is_revoked_too(live_site: str, alice: Any) -> None:
    client = register(live_site)
    browser = Browser.logged_in(live_site, "alice")
    verifier, challenge = pkce_pair()
    code = browser.consent(browser.authorize_page(client["client_id"], challenge))["code"][0]
    [listed] = applications_authorised(user=alice)  # consented, code not yet exchanged
    assert listed.scopes == ("music21:read", "music21:write")
    signed_in(alice).post(f"/privacy/applications/{listed.application.pk}/revoke")
    assert exchange(live_site, client["client_id"], code, verifier).status_code == 400
    assert applications_authorised(user=alice) == []


def test_revoking_needs_the_form_s_csrf_token(live_site: str, alice: Any) -> None:
    tokens = full_flow(live_site, "alice")
    application = AccessToken.objects.get(user=alice).application
    forged = Client(enforce_csrf_checks=True)
    forged.force_login(alice)
    assert forged.post(f"/privacy/applications/{application.pk}/revoke").status_code == 403
    assert forged.get(f"/privacy/applications/{application.pk}/revoke").status_code in (403, 405)
    assert _mcp_status(live_site, tokens["access_token"]) == 200
    assert [entry.name for entry in applications_authorised(user=alice)] == ["Test assistant"]
