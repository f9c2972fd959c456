"""Guessing credentials, wherever they are checked: each wrong guess is a security event charged to the address
that sent it, and the address is refused once blocked (apps.security.events). Over real HTTP, as an attacker
would send them."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from apps.security.events import block_lift
from apps.security.models import Block, ClientPolicy, SecurityEvent
from tests.security.oauth_flow import register


def _confidential_client(live_site: str) -> dict[str, Any]:
    return register(
        live_site,
        grant_types=["client_credentials"],
        token_endpoint_auth_method="client_secret_basic",
        redirect_uris=[],
    )


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
    client = _confidential_client(live_site)
    # Introspection answers only a resource server an administrator trusts: its secret is the one worth guessing.
    ClientPolicy.objects.filter(application__client_id=client["client_id"]).update(may_introspect=True)
    token = _client_token(live_site, client)
    for guess in ("guess-1", "guess-2", "guess-3"):
        if sent_as == "basic":
            answer = httpx2.post(f"{live_site}{endpoint}", data={"token": token}, auth=(client["client_id"], guess))
        else:
            answer = httpx2.post(
                f"{live_site}{endpoint}",
                data={"token": token, "client_id": client["client_id"], "client_secret": guess},
            )
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"] == "invalid_client"
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
    client = _confidential_client(live_site)
    token = _client_token(live_site, client)
    for _ in range(4):
        answer = httpx2.post(
            f"{live_site}/o/introspect/", data={"token": token}, auth=(client["client_id"], client["client_secret"])
        )
        assert answer.status_code == 401
        assert "resource servers an administrator of this server trusts" in answer.json()["error_description"]
    assert not SecurityEvent.objects.filter(kind="auth_failure").exists()
    assert not Block.objects.exists()
