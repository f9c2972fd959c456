"""Who may use the JSON views (Django REST framework): sessions are people, bearer tokens carry scopes."""

from __future__ import annotations

from typing import Any

from oauth2_provider.contrib.rest_framework import OAuth2Authentication
from oauth2_provider.www_authenticate import build_bearer_challenge
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated, PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from apps.security import scopes


class BearerAuthentication(OAuth2Authentication):
    """django-oauth-toolkit's bearer-token authentication (its request validator refuses a token issued for
    another resource, or a registration access token). A bearer token that is refused is a 401 that says why,
    not a request that carries on as anonymous, or as whoever the session cookie beside it belongs to."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        found = super().authenticate(request)
        if found is None and request.headers.get("Authorization", "").startswith("Bearer "):
            error = getattr(request, "oauth2_error", None) or {}
            raise AuthenticationFailed(
                error.get("error_description") or "The bearer token is invalid, expired or revoked."
            )
        return found


class InsufficientScope(PermissionDenied):
    """A 403 for a bearer token without the scope a view needs, carrying the challenge RFC 6750 section 3 asks for:
    the error and the scope to ask for. In the APIs' realm, as their 401s are, and like them without
    `resource_metadata`: the APIs publish no protected-resource metadata of their own (docs/security.md)."""

    default_code = "insufficient_scope"

    def __init__(self, scope: str, request: Request) -> None:
        message = f"This needs the {scope} scope, which the token was not granted."
        super().__init__(message)
        self.auth_header = build_bearer_challenge(
            request,
            oauth2_error={"error": "insufficient_scope", "error_description": message, "scope": scope},
            realm=BearerAuthentication.www_authenticate_realm,
            resource_metadata_url=None,
        )


def token_scopes(request: Request) -> frozenset[str] | None:
    """The bearer token's scopes, or None when the caller is a signed-in session."""
    if isinstance(request.successful_authenticator, OAuth2Authentication):
        return frozenset(request.auth.scope.split())
    return None


class IsStaffOrAdminToken(BasePermission):
    """Operators: a staff session, or a staff member's token with the music21:admin scope (only staff are granted
    it; one whose staff rights were withdrawn since cannot use it)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not request.user or not request.user.is_authenticated:
            raise NotAuthenticated("Sign in as staff, or send a bearer token with the music21:admin scope.")
        granted = token_scopes(request)
        if granted is not None and scopes.ADMIN not in granted:
            raise InsufficientScope(scopes.ADMIN, request)
        if not request.user.is_staff:
            raise PermissionDenied("This is for staff.")
        return True
