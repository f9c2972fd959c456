"""HTTP edges of the OAuth provider that people and discovery see: the discovery documents, the sign-in page and the
consent page. django-oauth-toolkit does the protocol; the token endpoints are in apps.security.token_views and
client registration in apps.security.registration_views."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.generic import View
from oauth2_provider import views as oauth2_views
from oauth2_provider.models import Application
from oauth2_provider.oauth2_backends import _add_iss_to_redirect
from oauth2_provider.settings import oauth2_settings

from apps.security import scopes
from apps.security.oauth_replies import cors
from apps.security.resources import accepted_resources, resource_refusal
from apps.security.staff_otp import second_factor_redirect, staff_needs_second_factor
from apps.security.validators import LOOPBACK_HOSTS, code_challenge_problem


class _ReadableFromAnyOrigin(View):
    """A public discovery document (django-oauth-toolkit's GET already answers with `Access-Control-Allow-Origin:
    *`), whose preflight is answered too: the MCP SDKs send `MCP-Protocol-Version` with the GET, so a browser asks
    first, and Django's own OPTIONS answer carried no CORS headers."""

    def options(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return cors(super().options(request, *args, **kwargs), methods="GET, OPTIONS")


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
