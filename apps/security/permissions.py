"""Who may use the JSON views (Django REST framework): sessions are people, bearer tokens carry scopes."""

from __future__ import annotations

from typing import Any

from oauth2_provider.contrib.rest_framework import OAuth2Authentication
from rest_framework.exceptions import NotAuthenticated, PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from apps.security import scopes


def token_scopes(request: Request) -> frozenset[str] | None:
    """The bearer token's scopes, or None when the caller is a signed-in session."""
    if isinstance(request.successful_authenticator, OAuth2Authentication):
        return frozenset(request.auth.scope.split())
    return None


class IsStaffOrAdminToken(BasePermission):
    """Operators: a staff session, or a token with the music21:admin scope."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not request.user or not request.user.is_authenticated:
            raise NotAuthenticated("Sign in as staff, or send a bearer token with the music21:admin scope.")
        granted = token_scopes(request)
        if granted is None:
            if not request.user.is_staff:
                raise PermissionDenied("This is for staff.")
            return True
        if scopes.ADMIN not in granted:
            raise PermissionDenied(f"This needs the {scopes.ADMIN} scope, which the token was not granted.")
        return True
