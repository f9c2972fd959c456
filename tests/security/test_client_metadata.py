"""Client ID Metadata Documents: an https URL as client_id, its document fetched, held to the registration rules.

The network is closed, so the documents are served here, over real https (a self-signed certificate made for the
test) on 127.0.0.1. The production fetcher refuses loopback, as it must; LoopbackDocumentFetcher is that same
fetcher with one stand-in: permission to reach the test's server (`localhost:<its port>` on 127.0.0.1) and trust
in its certificate. Everything else is the production code: the URL checks, certificate and host-name
verification, no redirects, the time and size limits, the caching, the platform's rules. The tests of what the
fetcher refuses to reach use the production setting, with no stand-in at all.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar
from unittest import mock
from urllib.parse import urlsplit

import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.utils import timezone
from oauth2_provider import cimd
from oauth2_provider.models import Application

from apps.compliance.models import AuditEvent
from apps.security.client_metadata import MAX_CLIENT_ID_LENGTH, PlatformMetadataFetcher
from apps.security.models import ClientPolicy
from apps.security.services import client_disable, token_verify
from tests.security.oauth_flow import REDIRECT_URI, Browser, exchange, pkce_pair

NAME = "Metadata Assistant"


def _certificate(directory: Path) -> tuple[str, str]:
    """A self-signed certificate for localhost and 127.0.0.1: (certificate file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_file), str(key_file)


class DocumentServer:
    """An https server on 127.0.0.1 that serves the documents published to it and counts the requests."""

    def __init__(self, directory: Path) -> None:
        self.cafile, keyfile = _certificate(directory)
        self.documents: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.requests: Counter[str] = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests[self.path] += 1
                body, headers = server.documents.get(self.path, (b"not found", {"Content-Type": "text/plain"}))
                self.send_response(200 if self.path in server.documents else 404)
                for header, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(header, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cafile, keyfile)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str, host: str = "localhost") -> str:
        return f"https://{host}:{self.port}{path}"

    def publish(
        self,
        document: dict[str, Any] | bytes,
        *,
        path: str | None = None,
        cache_control: str = "max-age=600",
        content_type: str = "application/json",
    ) -> str:
        """Serve `document` (a dict is completed into a valid client metadata document at its URL); its URL."""
        path = path or f"/clients/{uuid.uuid4().hex}.json"
        if isinstance(document, dict):
            document = json.dumps(metadata_document(self.url(path), **document)).encode()
        self.documents[path] = (document, {"Content-Type": content_type, "Cache-Control": cache_control})
        return self.url(path)

    def requests_for(self, url: str) -> int:
        return self.requests[urlsplit(url).path]


def metadata_document(url: str, **fields: Any) -> dict[str, Any]:
    return {
        "client_id": url,
        "client_name": NAME,
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        **fields,
    }


class LoopbackDocumentFetcher(PlatformMetadataFetcher):
    """The platform's fetcher, with the one stand-in described at the top of this module. It replaces two names
    of oauth2_provider.cimd for the length of a fetch: the resolver (only the test server's host and port are
    answered differently) and that module's `ssl` (its default context trusts the test certificate and nothing
    else). Should django-oauth-toolkit rename either, mock.patch.object fails and says so."""

    port: ClassVar[int] = 0
    cafile: ClassVar[str] = ""

    def fetch(self, client_id: str) -> tuple[dict[str, Any], int]:
        resolve = cimd._resolve_and_validate

        def resolve_test_server(hostname: str, port: int) -> list[str]:
            return ["127.0.0.1"] if (hostname, port) == ("localhost", self.port) else resolve(hostname, port)

        trusting_the_test_certificate = SimpleNamespace(
            create_default_context=lambda: ssl.create_default_context(cafile=self.cafile)
        )
        with (
            mock.patch.object(cimd, "_resolve_and_validate", resolve_test_server),
            mock.patch.object(cimd, "ssl", trusting_the_test_certificate),
        ):
            return super().fetch(client_id)


@pytest.fixture
def document_server(tmp_path: Path) -> Iterator[DocumentServer]:
    server = DocumentServer(tmp_path)
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def documents(live_site: str, settings: Any, document_server: DocumentServer, monkeypatch: Any) -> DocumentServer:
    """The document server, which the site's fetcher may reach (LoopbackDocumentFetcher)."""
    monkeypatch.setattr(LoopbackDocumentFetcher, "port", document_server.port)
    monkeypatch.setattr(LoopbackDocumentFetcher, "cafile", document_server.cafile)
    settings.OAUTH2_PROVIDER = {
        **settings.OAUTH2_PROVIDER,
        "CIMD_METADATA_FETCHER": f"{LoopbackDocumentFetcher.__module__}.LoopbackDocumentFetcher",
    }
    return document_server


def _refused(page: httpx2.Response) -> str:
    """The authorize page's refusal: a page (never a redirect, never a 500) that says why."""
    assert page.status_code == 400, page.text[:500]
    assert "This request cannot be authorised" in page.text
    return page.text


# --- Discovery --------------------------------------------------------------------------------------------------


def test_the_metadata_says_client_id_metadata_documents_are_accepted_and_registration_stays(live_site: str) -> None:
    meta = httpx2.get(f"{live_site}/.well-known/oauth-authorization-server").json()
    assert meta["client_id_metadata_document_supported"] is True
    assert meta["registration_endpoint"] == f"{live_site}/o/register/"


# --- The flow ---------------------------------------------------------------------------------------------------


def test_a_client_known_by_its_document_url_gets_a_token(live_site: str, documents: DocumentServer, alice: Any) -> None:
    client_id = documents.publish({})
    verifier, challenge = pkce_pair()
    browser = Browser.logged_in(live_site, "alice")

    page = browser.authorize_page(client_id, challenge)
    assert page.status_code == 200, page.text[:500]
    assert NAME in page.text
    query = browser.consent(page)
    assert query["iss"] == [live_site]
    response = exchange(live_site, client_id, query["code"][0], verifier)

    assert response.status_code == 200, response.text
    verified = token_verify(raw_token=response.json()["access_token"], resource=f"{live_site}/mcp")
    assert verified.client_id == client_id
    assert verified.user_id == alice.pk
    application = Application.objects.get(client_id=client_id)
    assert application.registration_source == Application.RegistrationSource.CIMD
    assert application.client_type == Application.CLIENT_PUBLIC
    assert application.name == NAME


def test_a_client_known_by_its_document_is_registered_like_any_other_and_can_be_disabled(
    live_site: str, documents: DocumentServer, alice: Any
) -> None:
    client_id = documents.publish({})
    browser = Browser.logged_in(live_site, "alice")
    assert browser.authorize_page(client_id, pkce_pair()[1]).status_code == 200

    application = Application.objects.get(client_id=client_id)
    assert ClientPolicy.objects.filter(application=application, disabled=False).exists()
    event = AuditEvent.objects.get(action="oauth.client_registered", client_id=client_id)
    assert event.detail == {"registration": "client_id_metadata_document", "client_name": NAME}

    client_disable(application=application, reason="test")
    page = _refused(browser.authorize_page(client_id, pkce_pair()[1]))
    assert "Invalid client_id" in page
    assert documents.requests_for(client_id) == 1  # its row, and so its policy, is kept: it stays disabled


def test_the_document_is_fetched_once_and_kept_for_its_max_age(
    live_site: str, documents: DocumentServer, alice: Any
) -> None:
    client_id = documents.publish({}, cache_control="public, max-age=900")
    browser = Browser.logged_in(live_site, "alice")
    verifier, challenge = pkce_pair()

    query = browser.consent(browser.authorize_page(client_id, challenge))
    assert exchange(live_site, client_id, query["code"][0], verifier).status_code == 200
    assert browser.authorize_page(client_id, challenge).status_code == 200
    assert documents.requests_for(client_id) == 1

    expires = Application.objects.get(client_id=client_id).cimd_expires_at
    assert abs((expires - timezone.now()).total_seconds() - 900) < 30
    # 900 seconds later (moved, not waited for), the client's changed document is fetched and used.
    documents.publish({"client_name": "Renamed Assistant"}, path=urlsplit(client_id).path)
    Application.objects.filter(client_id=client_id).update(cimd_expires_at=timezone.now() - dt.timedelta(seconds=1))
    page = browser.authorize_page(client_id, challenge)
    assert "Renamed Assistant" in page.text
    assert documents.requests_for(client_id) == 2


# --- Documents refused by the platform's rules, with the reason on the page ---------------------------------------


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"redirect_uris": ["http://evil.example/cb"]}, "uses http on a host other than loopback"),
        ({"redirect_uris": ["https://app.example/cb#frag"]}, "fragment"),
        ({"redirect_uris": ["https://app.example/cb\nhttp://evil.example/cb"]}, "contains whitespace"),
        ({"redirect_uris": []}, "redirect_uris must be a non-empty list"),
        ({"grant_types": ["implicit"]}, "grant_types must include authorization_code"),
        ({"grant_types": ["authorization_code", "password"]}, "the &#x27;password&#x27; grant is not offered"),
        ({"response_types": ["token"]}, "only the response type &#x27;code&#x27;"),
        ({"token_endpoint_auth_method": "client_secret_basic"}, "token_endpoint_auth_method must be &#x27;none&#x27;"),
        ({"client_id": "https://someone-else.example/client.json"}, "it must be the document&#x27;s own URL"),
    ],
)
def test_a_document_that_breaks_the_registration_rules_is_refused_with_the_reason(
    live_site: str, documents: DocumentServer, alice: Any, fields: dict[str, Any], named: str
) -> None:
    client_id = documents.publish(fields)

    page = _refused(Browser.logged_in(live_site, "alice").authorize_page(client_id, pkce_pair()[1]))

    assert f"The client&#x27;s metadata document at {client_id} was not accepted" in page
    assert named in page
    assert not Application.objects.filter(client_id=client_id).exists()


def test_an_oversized_document_is_refused(live_site: str, documents: DocumentServer, alice: Any) -> None:
    client_id = documents.publish({"client_name": NAME, "software_statement": "x" * 6000})

    page = _refused(Browser.logged_in(live_site, "alice").authorize_page(client_id, pkce_pair()[1]))

    assert "exceeds the maximum allowed size" in page
    assert not Application.objects.filter(client_id=client_id).exists()


def test_an_answer_that_is_not_a_json_document_is_refused(
    live_site: str, documents: DocumentServer, alice: Any
) -> None:
    client_id = documents.publish({}, content_type="text/html")
    missing = documents.url(f"/clients/{uuid.uuid4().hex}.json")
    browser = Browser.logged_in(live_site, "alice")

    assert "is not JSON" in _refused(browser.authorize_page(client_id, pkce_pair()[1]))
    assert "returned HTTP 404" in _refused(browser.authorize_page(missing, pkce_pair()[1]))


def test_a_refused_document_is_not_fetched_again_at_once(live_site: str, documents: DocumentServer, alice: Any) -> None:
    client_id = documents.publish({"redirect_uris": ["http://evil.example/cb"]})
    browser = Browser.logged_in(live_site, "alice")

    for _ in range(3):
        assert "uses http on a host other than loopback" in _refused(browser.authorize_page(client_id, pkce_pair()[1]))

    assert documents.requests_for(client_id) == 1


# --- What the production fetcher will not reach -------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "[::1]", "10.0.0.1", "192.168.1.1", "169.254.169.254", "[::ffff:127.0.0.1]"],
)
def test_a_client_id_url_on_a_private_address_is_not_fetched(
    live_site: str, document_server: DocumentServer, alice: Any, host: str
) -> None:
    # No stand-in here: the production fetcher. For the loopback hosts a valid document is really there.
    client_id = document_server.publish({})
    private = client_id.replace(f"https://localhost:{document_server.port}", document_server.url("", host=host))

    page = _refused(Browser.logged_in(live_site, "alice").authorize_page(private, pkce_pair()[1]))

    assert "it could not be fetched. It must be served over https by a public host" in page
    assert "non-public" not in page  # nothing about where the name led: the page must not map the network
    assert document_server.requests_for(client_id) == 0
    assert not Application.objects.filter(client_id=private).exists()


def test_a_client_id_url_longer_than_the_audit_trail_keeps_is_refused_unfetched(
    live_site: str, documents: DocumentServer, alice: Any
) -> None:
    client_id = documents.publish({}, path="/" + "c" * MAX_CLIENT_ID_LENGTH + ".json")

    page = _refused(Browser.logged_in(live_site, "alice").authorize_page(client_id, pkce_pair()[1]))

    assert f"at most {MAX_CLIENT_ID_LENGTH} characters" in page
    assert documents.requests_for(client_id) == 0


def test_an_unknown_plain_client_id_is_still_just_unknown(live_site: str, alice: Any) -> None:
    page = _refused(Browser.logged_in(live_site, "alice").authorize_page("no-such-client", pkce_pair()[1]))
    assert "Invalid client_id parameter value." in page
    assert "metadata document" not in page
