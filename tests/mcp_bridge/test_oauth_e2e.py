"""The main path end to end: an MCP client given only the /mcp URL discovers the authorization server from the
401, registers itself, sends its user through login and consent with PKCE, and then works as that user.

The client is the SDK's own `OAuthClientProvider`; the only stand-in is the person at the browser, played by an
HTTP client that logs in and presses "Allow" on the real consent page.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from oauth2_provider.models import AccessToken, Application

from tests.security.oauth_flow import REDIRECT_URI, Browser


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


def test_an_mcp_client_with_only_the_url_gets_in_and_analyses_a_chorale(
    mcp_mode: str, live_site: str, alice: Any
) -> None:
    storage = MemoryStorage()
    redirect: dict[str, Any] = {}
    visited: list[str] = []

    def person_at_the_browser(authorization_url: str) -> None:
        browser = Browser.logged_in(live_site, "alice")
        page = browser.http.get(authorization_url)
        assert "Allow" in page.text and "music21 e2e client" in page.text
        redirect.update(browser.consent(page))

    async def redirect_handler(authorization_url: str) -> None:
        visited.append(authorization_url)
        await anyio.to_thread.run_sync(person_at_the_browser, authorization_url)

    async def callback_handler() -> AuthorizationCodeResult:
        return AuthorizationCodeResult(
            code=redirect["code"][0], state=redirect["state"][0], iss=(redirect.get("iss") or [None])[0]
        )

    auth = OAuthClientProvider(
        server_url=f"{live_site}/mcp",
        client_metadata=OAuthClientMetadata(
            client_name="music21 e2e client",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            scope="music21:read music21:write",
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )

    async def conversation() -> None:
        async with (
            httpx2.AsyncClient(auth=auth, timeout=60) as http,
            Client(streamable_http_client(f"{live_site}/mcp", http_client=http), mode=mcp_mode) as session,
        ):
            tools = {t.name for t in (await session.list_tools()).tools}
            assert {"import_score", "key_analysis", "render_score"} <= tools
            imported = await session.call_tool(
                "import_score", {"score_id": "chorale", "source": "bach/bwv66.6", "source_type": "corpus"}
            )
            assert not imported.is_error, imported.content
            key = await session.call_tool("key_analysis", {"score_id": "chorale"})
            assert key.structured_content["key"] == "F# minor"

    anyio.run(conversation)

    # The client registered itself, went through the authorization endpoint with PKCE S256 and our resource...
    query = parse_qs(urlsplit(visited[0]).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["resource"] == [f"{live_site}/mcp"]
    client = Application.objects.get(client_id=storage.client_info.client_id)
    assert client.name == "music21 e2e client"
    # ...and every call acted as alice: the score is hers, under her token.
    assert alice.scores.get(score_id="chorale").notes_count == 165
    assert AccessToken.objects.filter(user=alice, application=client).exists()
