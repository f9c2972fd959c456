"""HTTP edges of the OAuth provider. django-oauth-toolkit does the protocol; these views add the platform's
registration policy (redirect URIs, grants, a per-IP limit; for updates too), the consent page, introspection for
trusted resource servers only, and the login page."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import View
from oauth2_provider import views as oauth2_views
from oauth2_provider.models import Application
from oauth2_provider.oauth2_backends import _add_iss_to_redirect
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.views import DynamicClientRegistrationView

from apps.compliance.audit import audit_record
from apps.core.errors import Blocked
from apps.security import scopes
from apps.security.events import block_check, security_event_record
from apps.security.models import ClientPolicy
from apps.security.registration import (
    client_metadata_problem,
    registration_key,
    registration_release,
    registration_reserve,
)
from apps.security.resources import accepted_resources, resource_refusal
from apps.security.services import client_secret_rotate
from apps.security.staff_otp import second_factor_redirect, staff_needs_second_factor
from apps.security.validators import (
    LOOPBACK_HOSTS,
    ResourceServerValidator,
    code_challenge_problem,
)


def _cors(response: HttpResponse, methods: str = "POST, OPTIONS") -> HttpResponse:
    # Browser-based MCP clients (the MCP Inspector) register and discover from another origin; these endpoints take
    # no cookies.
    response["Access-Control-Allow-Origin"] = "*"
    response["Access-Control-Allow-Headers"] = "Content-Type, Authorization, MCP-Protocol-Version"
    response["Access-Control-Allow-Methods"] = methods
    return response


class _ReadableFromAnyOrigin(View):
    """A public discovery document (django-oauth-toolkit's GET already answers with `Access-Control-Allow-Origin:
    *`), whose preflight is answered too: the MCP SDKs send `MCP-Protocol-Version` with the GET, so a browser asks
    first, and Django's own OPTIONS answer carried no CORS headers."""

    def options(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return _cors(super().options(request, *args, **kwargs), methods="GET, OPTIONS")


class ServerMetadataView(_ReadableFromAnyOrigin, oauth2_views.OAuthServerMetadataView):
    """RFC 8414 metadata, readable from any origin: django-oauth-toolkit's, but for how a client authenticates at
    the introspection endpoint. The library advertises the token endpoint's methods there, `none` among them
    (public clients use it), while introspection answers only a trusted resource server authenticating with its
    secret (basic or post) or presenting a token of its own (`IntrospectTokenView`). RFC 8414 section 2 takes
    "Bearer", from the access token types registry, as a method of that list."""

    INTROSPECTION_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "Bearer")

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = super().get(request, *args, **kwargs)
        metadata = json.loads(response.content)
        if "introspection_endpoint_auth_methods_supported" in metadata:
            metadata["introspection_endpoint_auth_methods_supported"] = list(self.INTROSPECTION_AUTH_METHODS)
            response.content = json.dumps(metadata)
        return response


class ResourceMetadataView(_ReadableFromAnyOrigin, oauth2_views.OAuthProtectedResourceMetadataView):
    """RFC 9728 protected resource metadata (of /mcp, and of PUBLIC_URL: see docs/security.md)."""


def _error(error: str, description: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": error, "error_description": description}, status=status)


def client_ip(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def _blocked_response(request: HttpRequest) -> JsonResponse | None:
    """403 for an address blocked after repeated security violations (see apps.security.events)."""
    try:
        block_check(ip=client_ip(request), client_id=None)
    except Blocked as error:
        return _error("access_denied", str(error), status=403)
    return None


def _body_too_large(request: HttpRequest, error: str) -> JsonResponse | None:
    """`error` naming the limit when the request's body is past DATA_UPLOAD_MAX_MEMORY_SIZE, or None. Django
    refuses such a body when it is first read, and would answer its bare HTML "Bad Request (400)"; these endpoints
    answer in their RFC's JSON (RFC 6749 section 5.2, RFC 7591 section 3.2.2)."""
    try:
        request.body  # noqa: B018  # read here, where the refusal can be answered
    except RequestDataTooBig:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return _error(error, f"The request body is larger than the {limit:,} bytes this endpoint accepts.")
    return None


def _not_cached(response: HttpResponse) -> HttpResponse:
    # A registration's answers carry the client secret and the registration access token: like a token response
    # (RFC 6749 section 5.1; RFC 7591 and 7592 show the same header), no cache on the way may keep them.
    response["Cache-Control"] = "no-store"
    return response


def client_metadata_refusal(request: HttpRequest) -> JsonResponse | None:
    """The platform's rules on the client metadata of a registration (RFC 7591) or of its update (RFC 7592), as
    the error to answer, or None; django-oauth-toolkit then checks the rest."""
    problem = client_metadata_problem(request.body)
    return _error(*problem) if problem else None


@method_decorator(csrf_exempt, name="dispatch")
class ClientRegistrationView(DynamicClientRegistrationView):
    """RFC 7591 registration, open to anyone (MCP clients register themselves), limited per IP."""

    def options(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return _cors(HttpResponse(status=204))

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        refused = (
            _blocked_response(request)
            or _body_too_large(request, "invalid_client_metadata")
            or client_metadata_refusal(request)
        )
        if refused is not None:
            return _cors(refused)
        key = registration_key(client_ip(request))
        retry_after = registration_reserve(key)
        if retry_after is not None:
            response = _error(
                "too_many_requests",
                f"Too many client registrations from this address; try again in {retry_after} seconds.",
                status=429,
            )
            response["Retry-After"] = str(retry_after)
            return _cors(response)
        response = super().post(request, *args, **kwargs)
        if response.status_code != 201:
            registration_release(key)
        else:
            registered = json.loads(response.content)
            client_id = registered["client_id"]
            if "client_secret" in registered:
                # RFC 7591 section 3.2.1 requires it with a secret, and django-oauth-toolkit leaves it out; 0 says
                # that the secret does not expire, as none of this server's does.
                registered["client_secret_expires_at"] = 0
                response.content = json.dumps(registered)
            application = Application.objects.get(client_id=client_id)
            ClientPolicy.objects.create(application=application, registration_ip=client_ip(request) or None)
            audit_record(
                action="oauth.client_registered",
                outcome="success",
                client_id=client_id,
                ip=client_ip(request),
                target=f"client:{client_id}",
            )
        return _cors(_not_cached(response))


@method_decorator(csrf_exempt, name="dispatch")
class ClientManagementView(oauth2_views.DynamicClientRegistrationManagementView):
    """RFC 7592: a client reads, updates or deletes its registration with its registration access token.

    An update obeys registration's rules (`client_metadata_refusal`, checked before django-oauth-toolkit
    authenticates the token: the rules are public, so answering them first tells nothing about the client).
    A blocked address is refused, a wrong token counts toward blocking it, and every request is audited.
    """

    AUDIT_ACTIONS = {"GET": "oauth.client_read", "PUT": "oauth.client_updated", "DELETE": "oauth.client_deleted"}

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        client_id = str(kwargs.get("client_id", ""))[:100]
        response = _blocked_response(request)
        if response is None and request.method == "PUT":
            response = _body_too_large(request, "invalid_client_metadata") or client_metadata_refusal(request)
        if response is None:
            response = super().dispatch(request, *args, **kwargs)
        if response.status_code == 401:
            security_event_record(
                kind="auth_failure",
                ip=client_ip(request),
                client_id=client_id or None,
                endpoint="/o/register/<client_id>/",
                reason="registration access token refused",
            )
        action = self.AUDIT_ACTIONS.get(request.method or "")
        if action is not None:
            audit_record(
                action=action,
                outcome="success" if response.status_code < 300 else "refused",
                client_id=client_id,
                ip=client_ip(request),
                target=f"client:{client_id}",
                detail={"status": response.status_code},
            )
        return _not_cached(response)

    def put(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """django-oauth-toolkit's update, and a new secret when the update changes whether the client has one.
        RFC 7592 section 2.2 lets the answer carry a new client_secret. A public client that becomes confidential
        has never been shown one (django-oauth-toolkit keeps the hash of a secret nobody knows), so it could never
        authenticate at the token endpoint: it gets a new one, in this answer only. One that becomes public gets
        a new one nobody is shown, so that its old secret no longer authenticates it."""
        client_id = str(kwargs.get("client_id", ""))
        with transaction.atomic():
            # Locked, so that of two concurrent updates making a client confidential only one issues a secret:
            # the other's would replace it, and the first client would hold a secret that no longer works.
            type_before = (
                Application.objects.select_for_update()
                .filter(client_id=client_id)
                .values_list("client_type", flat=True)
                .first()
            )
            response = super().put(request, *args, **kwargs)
            if response.status_code != 200 or type_before is None:
                return response
            application = Application.objects.get(client_id=client_id)
            if application.client_type == type_before:
                return response
            secret = client_secret_rotate(application=application)
        if application.client_type == Application.CLIENT_CONFIDENTIAL:
            updated = json.loads(response.content)
            updated["client_secret"] = secret
            updated["client_secret_expires_at"] = 0  # as at registration: this server's secrets do not expire
            response.content = json.dumps(updated)
        return response


class LoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True


class AuthorizationView(oauth2_views.AuthorizationView):
    """DOT's consent step. The page names what the person is about to trust: whether the application registered
    itself or an administrator registered it, the host it sends them back to, and each scope they can grant
    beside its plain-words explanation. It is always shown: `approval_prompt=auto` does not skip it.

    Scopes the person cannot grant (music21:admin, for anyone but staff) are not offered: the page lists the
    others, and says so; when nothing is left, its only button returns to the application with access_denied.
    The submitted form is validated again with the person attached (validators.PlatformOAuth2Validator).

    Before DOT sees the request, two OAuth 2.1 rules are enforced here, on the page and again on the submitted
    form (whose hidden fields a user agent could alter): PKCE with S256 is required (a challenge of its form,
    validators.code_challenge_problem), and `resource` may only name this server. The refusal is shown on the page
    rather than redirected, so an unverified redirect URI is never followed.
    """

    withheld_scopes: Sequence[str] = ()

    def _refusal(self, params: Any) -> HttpResponse | None:
        problem = None
        if not params.get("code_challenge"):
            problem = ("invalid_request", "PKCE is required: send a code_challenge with code_challenge_method=S256.")
        elif params.get("code_challenge_method") != "S256":
            problem = ("invalid_request", "Only the S256 code_challenge_method is accepted; 'plain' is refused.")
        elif challenge_problem := code_challenge_problem(params["code_challenge"]):
            problem = ("invalid_request", challenge_problem)
        else:
            resources = params.getlist("resource") if hasattr(params, "getlist") else []
            resources = [r for value in resources for r in value.split()]
            outsiders = [r for r in resources if r not in accepted_resources()]
            if outsiders:
                problem = ("invalid_target", resource_refusal(outsiders[0]))
        if problem is None:
            return None
        error = {"error": problem[0], "description": problem[1]}
        return render(self.request, self.template_name, {"error": error}, status=400)

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if "approval_prompt" in request.GET:
            # DOT lets a request's approval_prompt=auto override REQUEST_APPROVAL_PROMPT="force" and skip this page
            # for a client the person approved before. Consent is asked every time, so the parameter is ignored.
            request.GET = request.GET.copy()
            del request.GET["approval_prompt"]
        refusal = self._refusal(request.GET)
        wants_admin = scopes.ADMIN in request.GET.get("scope", "").split()
        if refusal is None and wants_admin and staff_needs_second_factor(request.user):
            # Staff grant operator access from a verified session only (scopes.admin_grantable): the code first,
            # then back here.
            return second_factor_redirect(request, next_url=request.get_full_path())
        return refusal or super().get(request, *args, **kwargs)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self._refusal(request.POST) or super().post(request, *args, **kwargs)

    def redirect(self, redirect_to: str, application: Any) -> HttpResponse:
        # RFC 9207 section 2: every authorization response names its issuer, error responses (a denied consent)
        # included; django-oauth-toolkit 3.4.1 adds `iss` only to successful ones (django-oauth-toolkit#1846).
        # Its own helper and issuer, so that both carry the same single `iss`; tests/security/test_oauth_bcp.py
        # pins it (and passes unchanged once the library adds it itself).
        issuer = oauth2_settings.oauth2_authorization_server_issuer(self.request)
        return super().redirect(_add_iss_to_redirect(redirect_to, issuer), application)

    def validate_authorization_request(self, request: HttpRequest) -> tuple[list[str], dict[str, Any]]:
        requested, credentials = super().validate_authorization_request(request)
        offered = scopes.grantable(requested, user=request.user)
        self.withheld_scopes = [scope for scope in requested if scope not in offered]
        # With nothing to offer, the form keeps the request's scopes so that its one button (deny) is valid.
        return offered or requested, credentials

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        offered = [
            (scope, description)
            for scope, description in zip(
                context.get("scopes") or [], context.get("scopes_descriptions") or [], strict=False
            )
            if scope not in self.withheld_scopes
        ]
        context["scopes_with_descriptions"] = offered
        context["withheld_scopes"] = self.withheld_scopes
        context["nothing_grantable"] = bool(self.withheld_scopes) and not offered
        application = context.get("application")
        if application is not None:
            source = application.registration_source
            context["self_registered"] = source != Application.RegistrationSource.MANUAL
            context["metadata_document"] = source == Application.RegistrationSource.CIMD
        host = urlsplit(context.get("redirect_uri") or "").hostname
        context["return_host"] = host
        context["return_is_loopback"] = host in LOOPBACK_HOSTS
        return context


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


class RevokeTokenView(_CalledFromLoopback, oauth2_views.RevokeTokenView):
    """DOT's revocation endpoint (RFC 7009), callable from a local tool's page as the token endpoint is."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self._readable(request, self._answer(request, *args, **kwargs))

    def _answer(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # A client authenticates here with its secret as at /o/token/: a blocked address is refused, and a wrong
        # secret counts toward blocking it, or this endpoint would be where secrets are guessed without limit.
        refused = _blocked_response(request) or _body_too_large(request, "invalid_request")
        if refused is not None:
            return _token_error(refused)
        response = super().post(request, *args, **kwargs)
        if response.status_code == 401:  # oauthlib's invalid_client: the only 401 of RFC 7009's endpoint
            _challenge_as_sent(request, response, realm="revocation")
            _client_authentication_failed(request, endpoint="/o/revoke_token/")
        return response


class TokenView(_CalledFromLoopback, oauth2_views.TokenView):
    """DOT's token endpoint, callable from a local tool's page (`_CalledFromLoopback`)."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # the refusals made here before the library sees the request included
        return self._readable(request, self._answer(request, *args, **kwargs))

    def _answer(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        refused = _blocked_response(request) or _body_too_large(request, "invalid_request")
        if refused is not None:
            return _token_error(refused)
        refused_grant = REFUSED_GRANTS.get(request.POST.get("grant_type", ""))
        if refused_grant is not None:
            return _token_error(_error("unsupported_grant_type", refused_grant))
        response = _token_error(super().post(request, *args, **kwargs))
        if response.status_code == 401:
            _challenge_as_sent(request, response, realm="token")
            _client_authentication_failed(request, endpoint="/o/token/")
        return response


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
            refused = _error(
                "invalid_request",
                "Send the token to introspect in a POST body (RFC 7662 section 2.1), never in the URL.",
                status=405,
            )
            refused["Allow"] = "POST, OPTIONS"
            return _token_error(refused)
        refused = _blocked_response(request) or _body_too_large(request, "invalid_request")
        return _token_error(refused) if refused is not None else super().dispatch(request, *args, **kwargs)

    def unauthenticated_response(self, request: HttpRequest, oauthlib_request: Any = None) -> HttpResponse:
        if _guessable_client_credentials(request):
            _client_authentication_failed(request, endpoint="/o/introspect/")
        response = _error(
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
