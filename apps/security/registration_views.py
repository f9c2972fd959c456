"""Dynamic client registration (RFC 7591) and the client configuration endpoint (RFC 7592): django-oauth-toolkit's,
with the platform's registration policy (apps.security.registration: redirect URIs, grants, a per-address limit),
for updates too, a new secret when an update changes whether the client has one, and every request audited."""

from __future__ import annotations

import json
from typing import Any

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider import views as oauth2_views
from oauth2_provider.models import Application
from oauth2_provider.views import DynamicClientRegistrationView

from apps.compliance.audit import audit_record
from apps.security.events import security_event_record
from apps.security.models import ClientPolicy
from apps.security.oauth_replies import blocked_response, body_too_large, client_ip, cors, not_cached, oauth_error
from apps.security.registration import (
    client_metadata_problem,
    registration_key,
    registration_release,
    registration_reserve,
)
from apps.security.services import client_secret_rotate


def client_metadata_refusal(request: HttpRequest) -> JsonResponse | None:
    """The platform's rules on the client metadata of a registration (RFC 7591) or of its update (RFC 7592), as
    the error to answer, or None; django-oauth-toolkit then checks the rest."""
    problem = client_metadata_problem(request.body)
    return oauth_error(*problem) if problem else None


@method_decorator(csrf_exempt, name="dispatch")
class ClientRegistrationView(DynamicClientRegistrationView):
    """RFC 7591 registration, open to anyone (MCP clients register themselves), limited per IP."""

    def options(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return cors(HttpResponse(status=204))

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        refused = (
            blocked_response(request)
            or body_too_large(request, "invalid_client_metadata")
            or client_metadata_refusal(request)
        )
        if refused is not None:
            return cors(refused)
        key = registration_key(client_ip(request))
        retry_after = registration_reserve(key)
        if retry_after is not None:
            response = oauth_error(
                "too_many_requests",
                f"Too many client registrations from this address; try again in {retry_after} seconds.",
                status=429,
            )
            response["Retry-After"] = str(retry_after)
            return cors(response)
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
        return cors(not_cached(response))


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
        response = blocked_response(request)
        if response is None and request.method == "PUT":
            response = body_too_large(request, "invalid_client_metadata") or client_metadata_refusal(request)
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
        return not_cached(response)

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
