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
        "OAUTH2_SERVER_CLASS": "apps.security.validators.PlatformServer",
        "OAUTH2_BACKEND_CLASS": "apps.security.client_metadata.PlatformOAuthLibCore",
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
        # Authorization responses name their issuer (RFC 9207), so a client talking to several servers can tell
        # which one answered (the mix-up attack, RFC 9700 4.4); the metadata advertises it.
        "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
        # The settings below are already compliant; these gates make `check --deploy` fail (an error, not a
        # warning) should one of them ever be turned off: refresh-token reuse detection, exact redirect URIs, PKCE.
        "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
        "COMPLIANT_BCP_RFC9700_REDIRECT_URI_MATCHING": True,
        "COMPLIANT_BCP_RFC9700_PKCE_REQUIRED": True,
        # Not COMPLIANT_BCP_RFC9700_REDIRECT_URI_SCHEME: http stays allowed because native MCP clients receive the
        # code on a loopback http port (RFC 8252); registration allows http on loopback only (docs/security.md).
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
        # Client ID Metadata Documents: an https URL as client_id, its document fetched on first sight with
        # django-oauth-toolkit's SSRF-hardened fetcher (public addresses only, no redirects), held to the same
        # rules as a registration, its refusals explained on the authorize page (apps.security.client_metadata).
        "CIMD_ENABLED": True,
        "CIMD_METADATA_FETCHER": "apps.security.client_metadata.PlatformMetadataFetcher",
        "CIMD_REGISTRATION_PERMISSION_CLASSES": ("apps.security.client_metadata.PlatformCIMDPermission",),
        # The fetch holds a worker on the authorize request of a user who is waiting: a document is a few
        # hundred bytes, and a host that needs longer than this is failing anyway.
        "CIMD_FETCH_TIMEOUT_SECONDS": 3,
        # The draft's recommended limit (section 6.6); a real document is well under 1 KiB.
        "CIMD_MAX_DOCUMENT_SIZE": 5 * 1024,
        # Cache-Control max-age decides how long a document is kept, within these bounds: the floor keeps a
        # no-cache document from costing a fetch per request, the ceiling lets a changed document take effect
        # within a day.
        "CIMD_METADATA_MIN_AGE_SECONDS": 5 * 60,
        "CIMD_METADATA_MAX_AGE_SECONDS": 24 * 60 * 60,
        # A URL that failed is not fetched again for this long (its refusal is shown meanwhile).
        "CIMD_FAILURE_BACKOFF_SECONDS": 60,
        # Fetches under way at once, per process: a flood of new URLs is refused rather than holding every worker.
        "CIMD_MAX_CONCURRENT_FETCHES": 10,
        "OIDC_ISS_ENDPOINT": public_url,
        "OAUTH2_RESPONSE_TYPES_SUPPORTED": ["code"],
        "OAUTH2_GRANT_TYPES_SUPPORTED": ["authorization_code", "refresh_token", "client_credentials"],
        "OAUTH2_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": ["none", "client_secret_basic", "client_secret_post"],
        # A token bound to a resource is accepted there only, not under it (apps.security.resources).
        "RESOURCE_SERVER_TOKEN_RESOURCE_VALIDATOR": "apps.security.resources.audience_allows",
        "OAUTH2_PROTECTED_RESOURCE_IDENTIFIER": f"{public_url}/mcp",
        "OAUTH2_PROTECTED_RESOURCE_AUTHORIZATION_SERVERS": [public_url],
        "OAUTH2_PROTECTED_RESOURCE_NAME": "music21 platform (MCP)",
    }
