"""The token endpoints of the OAuth provider: token (RFC 6749), revocation (RFC 7009) and introspection (RFC 7662),
django-oauth-toolkit's, with what the platform adds: a blocked address refused, a wrong client secret counted toward
blocking the address wherever it is tried, refused grants, errors as RFC 6749 has them, and answers readable by
browser-based tools on this machine."""

from __future__ import annotations

import base64
import contextlib
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import View
from oauth2_provider import views as oauth2_views
from oauth2_provider.models import Application

from apps.security.events import security_event_record
from apps.security.models import ClientPolicy
from apps.security.oauth_replies import blocked_response, body_too_large, client_ip, oauth_error
from apps.security.validators import LOOPBACK_HOSTS, ResourceServerValidator


def _loopback_origin(request: HttpRequest) -> str | None:
    origin = request.headers.get("Origin", "")
    return origin if origin and urlsplit(origin).hostname in LOOPBACK_HOSTS else None


# Grants oauthlib's server would still take up, refused before it sees them. The device grant: django-oauth-toolkit
# routes it to its device flow before oauthlib (a 500 without device_code). The password grant: oauthlib
# authenticates the client first, so a public client asking for it got 401 invalid_client, recorded as a wrong
# client secret against its address, and a confidential one invalid_grant "Invalid credentials given." even with
# the right password.
REFUSED_GRANTS = {
    "urn:ietf:params:oauth:grant-type:device_code": "The device authorization grant is not offered.",
    "password": "The password grant is not offered (OAuth 2.1); use the authorization code grant with PKCE.",
}


def _token_error(response: HttpResponse) -> HttpResponse:
    """A token endpoint error as RFC 6749 section 5.2 has it: JSON, sent as application/json, and not to be
    cached. oauthlib sends its JSON headers with the errors it finds validating a request, not with those raised
    while the token is saved, where django-oauth-toolkit checks `resource` (invalid_target): those went out as
    Django's default text/html."""
    if response.status_code >= 400:
        response["Content-Type"] = "application/json"
        response["Cache-Control"] = "no-store"
    return response


def _named_client_id(request: HttpRequest) -> str:
    """The client_id a token request names: in its Basic credentials (RFC 6749 section 2.3.1: form-encoded, then
    base64), or in its body."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        with contextlib.suppress(ValueError):  # not base64, or not text: nothing named
            return unquote_plus(base64.b64decode(credentials.strip(), validate=True).decode().partition(":")[0])
    return str(request.POST.get("client_id", ""))


def _challenge_as_sent(request: HttpRequest, response: HttpResponse, *, realm: str) -> None:
    """The challenge of a refused client authentication at an endpoint that takes client credentials only (token,
    revocation). oauthlib challenges every 401 with "Bearer", which these endpoints do not take. RFC 6749 section
    5.2: a client that authenticated in the Authorization header is challenged in its scheme (Basic); one that sent
    its credentials in the body is sent none, so that no browser answers with a password prompt."""
    if "WWW-Authenticate" in response:
        del response["WWW-Authenticate"]
    if request.headers.get("Authorization", "").lower().startswith("basic "):
        response["WWW-Authenticate"] = f'Basic realm="{realm}"'


def _client_authentication_failed(request: HttpRequest, *, endpoint: str) -> None:
    """Record a refused client authentication (a wrong client secret, an unknown client) at `endpoint` as an
    `auth_failure` counting toward blocking the address that sent it, at every endpoint that checks a client's
    secret, so that guesses are counted wherever they are made. The client_id in the request is only what the
    sender named (anyone can name any client), so it is kept as a detail and never counted against that client."""
    security_event_record(
        kind="auth_failure",
        ip=client_ip(request),
        endpoint=endpoint,
        reason="client authentication failed",
        named_client_id=_named_client_id(request)[:100],
    )


@method_decorator(csrf_exempt, name="dispatch")
class _CalledFromLoopback(View):
    """A token endpoint that browser-based tools on this machine (the MCP Inspector on localhost) may call and read
    the answers of: oauthlib allows CORS only for https origins, and a local tool's page is plain http."""

    def options(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = HttpResponse(status=204)
        origin = _loopback_origin(request)
        if origin:
            response["Access-Control-Allow-Origin"] = origin
            response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
            response["Access-Control-Allow-Headers"] = "Content-Type, Authorization"
        return response

    @staticmethod
    def _readable(request: HttpRequest, response: HttpResponse) -> HttpResponse:
        """Every answer, refusals included, so that a local tool can show why it was refused rather than a CORS
        failure."""
        origin = _loopback_origin(request)
        if origin and "Access-Control-Allow-Origin" not in response:
            response["Access-Control-Allow-Origin"] = origin
        return response


class _ClientAuthenticated(_CalledFromLoopback):
    """An endpoint where a client authenticates with its secret (token, revocation): a blocked address is refused,
    and a wrong secret counts toward blocking it, or the endpoint would be where secrets are guessed without
    limit. A subclass names its `ENDPOINT` and the `REALM` of its challenge, and may refuse a request itself
    (`refused`) or shape the library's answer (`answered`)."""

    ENDPOINT = ""
    REALM = ""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # the refusals made here before the library sees the request included
        return self._readable(request, self._answer(request, *args, **kwargs))

    def _answer(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        refused = blocked_response(request) or body_too_large(request, "invalid_request") or self.refused(request)
        if refused is not None:
            return _token_error(refused)
        response = self.answered(super().post(request, *args, **kwargs))
        if response.status_code == 401:
            _challenge_as_sent(request, response, realm=self.REALM)
            _client_authentication_failed(request, endpoint=self.ENDPOINT)
        return response

    def refused(self, request: HttpRequest) -> HttpResponse | None:
        return None

    def answered(self, response: HttpResponse) -> HttpResponse:
        return response


class RevokeTokenView(_ClientAuthenticated, oauth2_views.RevokeTokenView):
    """DOT's revocation endpoint (RFC 7009), callable from a local tool's page as the token endpoint is. Its only
    401 is oauthlib's invalid_client."""

    ENDPOINT = "/o/revoke_token/"
    REALM = "revocation"


class TokenView(_ClientAuthenticated, oauth2_views.TokenView):
    """DOT's token endpoint, callable from a local tool's page (`_CalledFromLoopback`)."""

    ENDPOINT = "/o/token/"
    REALM = "token"

    def refused(self, request: HttpRequest) -> HttpResponse | None:
        refused_grant = REFUSED_GRANTS.get(request.POST.get("grant_type", ""))
        return None if refused_grant is None else oauth_error("unsupported_grant_type", refused_grant)

    def answered(self, response: HttpResponse) -> HttpResponse:
        return _token_error(response)


@method_decorator(csrf_exempt, name="dispatch")  # as django-oauth-toolkit's: its dispatch is overridden here
class IntrospectTokenView(oauth2_views.IntrospectTokenView):
    """RFC 7662 introspection, for the resource servers an administrator trusts (ClientPolicy.may_introspect):
    anyone can register a confidential client, and the answer tells whose a token is and what it may do. Every
    other caller, with client credentials or a bearer token, gets a 401 (RFC 7662 section 2.3)."""

    validator_class = ResourceServerValidator

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # A blocked address is refused here as at /o/token/, before any secret is checked; so is a body too large
        # to read, in JSON rather than Django's bare HTML.
        if request.method == "OPTIONS":
            return super().dispatch(request, *args, **kwargs)
        if request.method != "POST":
            # django-oauth-toolkit also answers a GET with the token in its query string, which every access log on
            # the way keeps. RFC 7662 section 2.1: the token is POSTed.
            refused = oauth_error(
                "invalid_request",
                "Send the token to introspect in a POST body (RFC 7662 section 2.1), never in the URL.",
                status=405,
            )
            refused["Allow"] = "POST, OPTIONS"
            return _token_error(refused)
        refused = blocked_response(request) or body_too_large(request, "invalid_request")
        return _token_error(refused) if refused is not None else super().dispatch(request, *args, **kwargs)

    def unauthenticated_response(self, request: HttpRequest, oauthlib_request: Any = None) -> HttpResponse:
        if _guessable_client_credentials(request):
            _client_authentication_failed(request, endpoint="/o/introspect/")
        response = oauth_error(
            "invalid_client",
            "Token introspection is only for resource servers an administrator of this server trusts; this "
            "client is not one, or its credentials are wrong.",
            status=401,
        )
        response["WWW-Authenticate"] = 'Basic realm="introspection"'
        return response


def _guessable_client_credentials(request: HttpRequest) -> bool:
    """Whether an introspection request refused as unauthenticated was a guess at a client secret: it sent client
    credentials (Basic, or a client_secret in its body), naming a client that is unknown or one an administrator
    trusts (whose secret was then wrong). A bearer token is no guess (tokens cannot be guessed, as at /mcp), and
    neither is a client not trusted to introspect: its answer is the same 401 whatever secret it sends, so it tests
    no guess, and an honest resource server an administrator has not yet trusted is not blocked for asking."""
    sent_basic = request.headers.get("Authorization", "").lower().startswith("basic ")
    if not sent_basic and not request.POST.get("client_secret"):
        return False
    named = _named_client_id(request)
    known = Application.objects.filter(client_id=named).exists()
    return not known or ClientPolicy.objects.filter(application__client_id=named, may_introspect=True).exists()
