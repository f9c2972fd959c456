"""Administrators see security events, lift blocks and disable clients from the admin."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

from django.utils import timezone
from oauth2_provider.models import Application

from apps.security.models import Block, ClientPolicy, SecurityEvent
from tests.support import signed_in, superuser


def test_security_pages_render_and_events_cannot_be_edited(db: None) -> None:
    client = signed_in(superuser())
    event = SecurityEvent.objects.create(kind="auth_failure", ip="10.1.1.1", detail={"endpoint": "/mcp"})
    for url in [
        "/admin/security/securityevent/",
        f"/admin/security/securityevent/{event.pk}/change/",
        "/admin/security/block/",
        "/admin/oauth2_provider/application/",
    ]:
        assert client.get(url).status_code == 200, url
    assert client.get("/admin/security/securityevent/add/").status_code == 403
    client.post(f"/admin/security/securityevent/{event.pk}/delete/", {"post": "yes"})
    assert SecurityEvent.objects.filter(pk=event.pk).exists()


def test_lifting_a_block_from_the_admin(db: None) -> None:
    client = signed_in(superuser())
    block = Block.objects.create(
        target="ip", value="10.2.2.2", reason="test", until=timezone.now() + timedelta(hours=1)
    )
    response = client.post(
        "/admin/security/block/", {"action": "lift_blocks", "_selected_action": [block.pk]}, follow=True
    )
    assert response.status_code == 200
    block.refresh_from_db()
    assert block.lifted


def test_disabling_a_client_from_the_admin(db: None) -> None:
    client = signed_in(superuser())
    application = Application.objects.create(
        name="rogue",
        client_type="public",
        authorization_grant_type="authorization-code",
        redirect_uris="http://127.0.0.1:9/cb",
    )
    client.post(
        "/admin/oauth2_provider/application/",
        {"action": "disable_clients", "_selected_action": [application.pk]},
        follow=True,
    )
    assert ClientPolicy.objects.get(application=application).disabled
    assert "disabled" in client.get("/admin/oauth2_provider/application/").content.decode()


def test_security_events_name_their_client_and_show_their_detail_readably(db: None) -> None:
    client = signed_in(superuser())
    application = Application.objects.create(
        name="Harmony notebook",
        client_type="public",
        authorization_grant_type="authorization-code",
        redirect_uris="http://127.0.0.1:9/cb",
    )
    event = SecurityEvent.objects.create(
        kind="scope_violation", client_id=application.client_id, detail={"tool": "import_score"}
    )
    client_page = f'href="/admin/oauth2_provider/application/{application.pk}/change/"'
    listing = client.get("/admin/security/securityevent/").content.decode()
    assert client_page in listing and ">Harmony notebook</a>" in listing
    page = client.get(f"/admin/security/securityevent/{event.pk}/change/").content.decode()
    assert client_page in page and '<pre class="json">{\n  &quot;tool&quot;: &quot;import_score&quot;\n}</pre>' in page


def test_an_oauth_clients_page_offers_no_broken_view_on_site(db: None) -> None:
    client = signed_in(superuser())
    application = Application.objects.create(
        name="c", client_type="public", authorization_grant_type="authorization-code", redirect_uris="http://127.0.0.1/"
    )
    page = client.get(f"/admin/oauth2_provider/application/{application.pk}/change/").content.decode()
    assert "viewsitelink" not in page
    listing = client.get("/admin/oauth2_provider/application/").content.decode()
    assert f'title="client id {application.client_id}"' in listing and 'class="status status-enabled"' in listing


def _client_form(client: Any, **fields: str) -> dict[str, str]:
    """The admin's add-client form as a person fills it in: its initial values (the generated client id and
    secret, the inlines' management fields) with `fields` typed over them."""
    page = client.get("/admin/oauth2_provider/application/add/").content.decode()
    form: dict[str, str] = {}
    for tag in re.findall(r"<input[^>]+>", page):
        name, value = re.search(r'name="([^"]+)"', tag), re.search(r'value="([^"]*)"', tag)
        if name and 'type="checkbox"' not in tag and 'type="submit"' not in tag:
            form[name.group(1)] = html.unescape(value.group(1)) if value else ""
    return {**form, "client_type": "public", "authorization_grant_type": "authorization-code", **fields}


def test_an_administrator_cannot_save_a_redirect_uri_holding_a_control_character(db: None) -> None:
    client = signed_in(superuser())
    refused = client.post(
        "/admin/oauth2_provider/application/add/",
        _client_form(client, name="smuggler", redirect_uris="https://app.example/cb\x01 http://127.0.0.1:9/cb"),
    )
    assert refused.status_code == 200  # the form again, with the reason beside the field
    assert "contains a control character (&#x27;\\x01&#x27;)" in refused.content.decode()
    assert not Application.objects.filter(name="smuggler").exists()
    saved = client.post(
        "/admin/oauth2_provider/application/add/",
        _client_form(client, name="native app", redirect_uris="https://app.example/cb\r\nhttp://127.0.0.1:9/cb"),
    )
    assert saved.status_code == 302, saved.content.decode()[:2000]
    assert Application.objects.get(name="native app").redirect_uris.split() == [
        "https://app.example/cb",
        "http://127.0.0.1:9/cb",
    ]
