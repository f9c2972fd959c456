"""The OAuth request validator: django-oauth-toolkit's, plus this platform's rules.

- a disabled client is treated as unknown everywhere (authorize, token, revoke, introspect);
- `resource` (RFC 8707) may only name this platform's MCP endpoint (or its origin): a token for another
  resource would be one an attacker can replay elsewhere;
- an authorization code presented a second time revokes the tokens issued from its first use.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from oauth2_provider.models import AccessToken, RefreshToken
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauthlib.oauth2.rfc6749 import errors

from apps.security.models import ClientPolicy, ConsumedAuthorizationCode


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def accepted_resources() -> set[str]:
    return {f"{settings.PUBLIC_URL}/mcp", settings.PUBLIC_URL, f"{settings.PUBLIC_URL}/"}


class PlatformOAuth2Validator(OAuth2Validator):
    def _load_application(self, client_id: str, request: Any) -> Any:
        client = super()._load_application(client_id, request)
        if client is not None and ClientPolicy.objects.filter(application=client, disabled=True).exists():
            request.client = None
            return None
        return client

    def _validate_resource_uris(self, request: Any, resources: list[str]) -> None:
        super()._validate_resource_uris(request, resources)
        for resource in resources:
            if resource not in accepted_resources():
                raise errors.CustomOAuth2Error(
                    error="invalid_target",
                    description=f"This server issues tokens only for {settings.PUBLIC_URL}/mcp, not {resource!r}.",
                    request=request,
                )

    def validate_code(self, client_id: str, code: str, client: Any, request: Any, *args: Any, **kwargs: Any) -> bool:
        if super().validate_code(client_id, code, client, request, *args, **kwargs):
            return True
        replayed = ConsumedAuthorizationCode.objects.filter(code_sha256=_sha256(code), application=client).first()
        if replayed is not None and replayed.access_token_checksum:
            # The code leaked, or the client misbehaves: whatever was issued from it is no longer safe, including
            # tokens since obtained by refreshing (the refresh token's family).
            for token in AccessToken.objects.filter(token_checksum=replayed.access_token_checksum):
                refresh = RefreshToken.objects.filter(access_token=token).first()
                if refresh is not None:
                    RefreshToken.revoke_family(refresh.token_family)
                token.revoke()
        return False

    def save_bearer_token(self, token: dict[str, Any], request: Any, *args: Any, **kwargs: Any) -> Any:
        saved = super().save_bearer_token(token, request, *args, **kwargs)
        if request.grant_type == "authorization_code" and getattr(request, "code", None):
            ConsumedAuthorizationCode.objects.update_or_create(
                code_sha256=_sha256(request.code),
                application=request.client,
                defaults={"access_token_checksum": _sha256(token["access_token"])},
            )
        return saved
