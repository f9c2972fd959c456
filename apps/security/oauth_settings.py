"""django-oauth-toolkit's settings for a given public URL (the issuer, and the MCP resource under it).

A function, not a constant, so that tests serving the site on a random port can build the same settings for
their URL.
"""

from __future__ import annotations

from typing import Any

from apps.security.scopes import DESCRIPTIONS, READ, WRITE

ACCESS_TOKEN_SECONDS = 60 * 60
REFRESH_TOKEN_SECONDS = 30 * 24 * 60 * 60


def oauth2_provider_settings(public_url: str) -> dict[str, Any]:
    return {
        "OAUTH2_VALIDATOR_CLASS": "apps.security.validators.PlatformOAuth2Validator",
        "SCOPES": dict(DESCRIPTIONS),
        "DEFAULT_SCOPES": [READ],
        "READ_SCOPE": READ,
        "WRITE_SCOPE": WRITE,
        # OAuth 2.1: authorization code with PKCE S256 only; no implicit, no password grant.
        "PKCE_REQUIRED": True,
        "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
        "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
        "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
        "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
        # Tokens are stored only as checksums: a database leak does not leak usable tokens.
        "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
        "AUTHORIZATION_CODE_EXPIRE_SECONDS": 60,
        "ACCESS_TOKEN_EXPIRE_SECONDS": ACCESS_TOKEN_SECONDS,
        "REFRESH_TOKEN_EXPIRE_SECONDS": REFRESH_TOKEN_SECONDS,
        # A refresh token works once; presenting a used one revokes its whole family (RFC 9700 4.14).
        "ROTATE_REFRESH_TOKEN": True,
        "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
        "REFRESH_TOKEN_REUSE_PROTECTION": True,
        "REQUEST_APPROVAL_PROMPT": "force",
        # Native MCP clients listen on a loopback port of their choosing (RFC 8252).
        "ALLOW_LOCALHOST_LOOPBACK": True,
        "DCR_ENABLED": True,
        "DCR_REGISTRATION_PERMISSION_CLASSES": ("oauth2_provider.dcr.AllowAllDCRPermission",),
        "OIDC_ISS_ENDPOINT": public_url,
        "OAUTH2_RESPONSE_TYPES_SUPPORTED": ["code"],
        "OAUTH2_GRANT_TYPES_SUPPORTED": ["authorization_code", "refresh_token", "client_credentials"],
        "OAUTH2_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": ["none", "client_secret_basic", "client_secret_post"],
        "OAUTH2_PROTECTED_RESOURCE_IDENTIFIER": f"{public_url}/mcp",
        "OAUTH2_PROTECTED_RESOURCE_AUTHORIZATION_SERVERS": [public_url],
        "OAUTH2_PROTECTED_RESOURCE_NAME": "music21 platform (MCP)",
    }
