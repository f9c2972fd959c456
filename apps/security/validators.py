"""The OAuth request validator: django-oauth-toolkit's, plus this platform's rules.

- a disabled client is treated as unknown everywhere (authorize, token, revoke, introspect);
- a redirect URI holds only what RFC 3986 allows, and a self-registered client's obeys registration's rules
  (`redirect_uri_problem`) at /o/authorize/ too;
- `resource` (RFC 8707) may only name this platform's MCP endpoint or its origin (apps.security.resources): a
  token for another resource would be one an attacker can replay elsewhere;
- an authorization code presented a second time revokes the tokens issued from its first use;
- music21:admin is granted only to staff, on every path: consent, code exchange, refresh, client credentials;
- a registration access token (RFC 7592) is not a bearer token for any API;
- introspection answers only the resource servers an administrator trusts (`ResourceServerValidator`);
- a PKCE code_verifier (and, at the authorize page, a code_challenge) has the form RFC 7636 gives it.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import OrderedDict
from typing import Any
from urllib.parse import urlsplit

from oauth2_provider.models import AccessToken, Application, RefreshToken
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.settings import oauth2_settings
from oauthlib.oauth2 import Server
from oauthlib.oauth2.rfc6749 import errors, utils

from apps.security import scopes
from apps.security.models import ClientPolicy, ConsumedAuthorizationCode
from apps.security.resources import accepted_resources, audience_refusal, resource_refusal


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}

# What RFC 3986 (section 2) lets a URI hold unencoded: the unreserved and reserved characters, and "%" opening a
# percent-encoding. Anything else must be refused before the URI is parsed: urlsplit drops tabs and line breaks,
# and django-oauth-toolkit stores a client's redirect URIs joined by spaces and splits them back on whitespace,
# so "https://a.example/cb http://evil.example/cb" as one item would be checked as one URI and stored as two.
_URI_TEXT = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*")


def uri_character_problem(uri: str) -> str | None:
    """Why `uri` holds something RFC 3986 does not allow unencoded (whitespace, a control character, a "%" that
    begins no percent-encoding, any other character), or None."""
    position = _URI_TEXT.match(uri).end()  # type: ignore[union-attr]  # it always matches, the empty string at least
    if position == len(uri):
        return None
    char = uri[position]
    if char.isspace():
        return (
            f"{uri!r} contains whitespace ({char!r}) at position {position}: a URI cannot (RFC 3986), and each "
            "redirect URI must be an item of its own"
        )
    if unicodedata.category(char) == "Cc":
        what = f"a control character ({char!r})"
    elif char == "%":
        what = "a '%' that begins no percent-encoding"
    else:
        what = repr(char)
    return f"{uri!r} contains {what} at position {position}, which a URI cannot hold unencoded (RFC 3986)"


def redirect_uri_problem(uri: Any) -> str | None:
    """Why a redirect URI is refused, or None: nothing but what RFC 3986 allows in a URI, https anywhere, http only
    to this machine, never a fragment."""
    if not isinstance(uri, str) or not uri:
        return f"{uri!r} is not a URI"
    problem = uri_character_problem(uri)
    if problem:
        return problem
    parts = urlsplit(uri)
    if parts.fragment or "#" in uri:
        return f"{uri!r} has a fragment, which redirect URIs must not have"
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return None
    if parts.scheme == "http":
        return f"{uri!r} uses http on a host other than loopback (127.0.0.1, localhost, [::1]); use https"
    return f"{uri!r} must be an https URI (or http on loopback)"


# RFC 7636 section 4.1: a code verifier is 43 to 128 characters of A-Z, a-z, 0-9, "-", ".", "_", "~" (enough entropy
# to resist guessing); section 4.2: an S256 challenge is its SHA-256, base64url-encoded without padding, 43 characters.
# Neither oauthlib nor django-oauth-toolkit checks either: a verifier of "abc" was accepted with its challenge.
CODE_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
S256_CODE_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")


def code_challenge_problem(challenge: str) -> str | None:
    """Why an S256 code_challenge is refused, or None."""
    if S256_CODE_CHALLENGE.fullmatch(challenge):
        return None
    return (
        "The code_challenge must be the S256 challenge (RFC 7636 section 4.2): the SHA-256 of the code verifier, "
        f"base64url-encoded without padding, 43 characters; {challenge[:50]!r} is not one."
    )


def code_verifier_check(request: Any) -> None:
    """oauthlib's custom token validator (run before its own checks of a code exchange): the code_verifier, when
    sent, must be what RFC 7636 section 4.1 allows. Malformed, it is an invalid_request (RFC 6749 section 5.2);
    well-formed but wrong, oauthlib's invalid_grant."""
    verifier = request.code_verifier
    if verifier is not None and not CODE_VERIFIER.fullmatch(verifier):
        raise errors.InvalidRequestError(
            description=(
                "The code_verifier must be 43 to 128 characters of A-Z, a-z, 0-9, '-', '.', '_' and '~' "
                f"(RFC 7636 section 4.1); the one sent ({len(verifier)} characters) is not."
            ),
            request=request,
        )


class PlatformServer(Server):
    """oauthlib's server (django-oauth-toolkit's OAUTH2_SERVER_CLASS), with the checks of a request that the
    request validator has no method for, added where oauthlib provides (its grants' custom validators)."""

    def __init__(self, request_validator: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(request_validator, *args, **kwargs)
        self.auth_grant.custom_validators.pre_token.append(code_verifier_check)
        # The code flow only: oauthlib would hand response_type=token to its implicit grant, whose refusal
        # (unauthorized_client, in the fragment) says the client may not, when no client may (RFC 6749 section
        # 4.1.2.1: unsupported_response_type, which the code grant answers in the query).
        self._response_types = {"code": self.auth_grant}


def is_registration_token(scope: str) -> bool:
    """Whether a token's scope makes it an RFC 7592 registration access token: django-oauth-toolkit stores those
    as access tokens carrying its DCR_REGISTRATION_SCOPE. It manages its client's registration, nothing else."""
    return oauth2_settings.DCR_REGISTRATION_SCOPE in scope.split()


def _active(user: Any) -> bool:
    """Whether a token's person may still use it: an active account, or no person (a client's own token)."""
    return user is None or user.is_active


def _bearer_error(request: Any, description: str) -> None:
    request.oauth2_error = OrderedDict([("error", "invalid_token"), ("error_description", description)])


class PlatformOAuth2Validator(OAuth2Validator):
    # Two of DOT's underscored methods are overridden, as DOT offers no public hook for either: `_load_application`
    # is where every grant and endpoint looks a client up (a disabled client must be unknown to all of them), and
    # `_validate_resource_uris` where RFC 8707 resources are checked. tests/security/test_oauth.py pins both (a
    # disabled client refused everywhere; another resource refused invalid_target).
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
                    description=resource_refusal(resource),
                    request=request,
                )

    def validate_redirect_uri(self, client_id: str, redirect_uri: str, request: Any, *args: Any, **kwargs: Any) -> bool:
        # A self-registered client's redirect URI is held to registration's rules where it is used, too: rows
        # stored before registration checked what a URI may hold can carry one smuggled in behind whitespace
        # ("https://a.example/cb http://evil.example/cb" as one item, stored as two), and a client known by its
        # metadata document keeps its last document when a re-fetch is refused.
        if not super().validate_redirect_uri(client_id, redirect_uri, request, *args, **kwargs):
            return False
        manual = request.client.registration_source == Application.RegistrationSource.MANUAL
        return manual or redirect_uri_problem(redirect_uri) is None

    def validate_scopes(
        self, client_id: str, requested: list[str], client: Any, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        if not super().validate_scopes(client_id, requested, client, request, *args, **kwargs):
            return False
        if request.user is None and request.grant_type is None:
            # An authorization request read for the consent page: DOT validates it before the person is attached.
            # The page offers only what the signed-in person may grant (views.AuthorizationView), and the
            # submitted consent is validated again here, with the person.
            return True
        return scopes.grantable(requested, user=request.user, grant_type=request.grant_type) == list(requested)

    def validate_refresh_token(self, refresh_token: str, client: Any, request: Any, *args: Any, **kwargs: Any) -> bool:
        # django-oauth-toolkit refreshes for whoever the token was issued to, an account disabled since included.
        return super().validate_refresh_token(refresh_token, client, request, *args, **kwargs) and _active(request.user)

    def validate_code(self, client_id: str, code: str, client: Any, request: Any, *args: Any, **kwargs: Any) -> bool:
        if super().validate_code(client_id, code, client, request, *args, **kwargs):
            # The person may have been disabled, or lost staff rights, since consenting: a disabled account gets no
            # token (invalid_grant, as at a refresh), and the token gets what they can grant now (the token
            # response names the narrower scope).
            request.scopes = scopes.grantable(request.scopes, user=request.user, grant_type=request.grant_type)
            return _active(request.user)
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

    def get_original_scopes(self, refresh_token: str, request: Any, *args: Any, **kwargs: Any) -> list[str]:
        # A refresh keeps music21:admin only while its person is still staff; asking for it again after that is
        # an invalid_scope (oauthlib allows only scopes within these).
        original = utils.scope_to_list(super().get_original_scopes(refresh_token, request, *args, **kwargs))
        return scopes.grantable(original or [], user=request.user, grant_type=request.grant_type)

    def validate_bearer_token(self, token: str, scopes_: list[str], request: Any) -> bool:
        if super().validate_bearer_token(token, scopes_, request):
            if is_registration_token(request.access_token.scope):
                _bearer_error(request, "A registration access token manages its client's registration, nothing else.")
                return False
            if not _active(request.access_token.user):
                # django-oauth-toolkit accepts a token whatever became of its person; /mcp refuses it as no_user.
                _bearer_error(request, "The account this token was issued for is disabled.")
                return False
            return True
        stored = AccessToken.objects.filter(token_checksum=_sha256(token)).only("resource").first() if token else None
        request_uri = (getattr(request, "uri", None) or "").split("?")[0]
        if stored is not None and stored.resource and not stored.allows_audience(request_uri):
            _bearer_error(request, audience_refusal(stored.resource, request_uri))  # DOT's words do not say which
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


def may_introspect(client: Any) -> bool:
    return client is not None and ClientPolicy.objects.filter(application=client, may_introspect=True).exists()


class ResourceServerValidator(PlatformOAuth2Validator):
    """The introspection endpoint's validator: a client authenticates there only if an administrator trusts it
    as a resource server (ClientPolicy.may_introspect), whether it sends its credentials or a bearer token.
    Anyone can register a confidential client; introspection tells whose a token is and what it may do."""

    def authenticate_client(self, request: Any, *args: Any, **kwargs: Any) -> bool:
        return super().authenticate_client(request, *args, **kwargs) and may_introspect(request.client)

    def validate_bearer_token(self, token: str, scopes_: list[str], request: Any) -> bool:
        return super().validate_bearer_token(token, scopes_, request) and may_introspect(request.client)
