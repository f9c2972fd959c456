"""Client ID Metadata Documents (an https URL as `client_id`) under the platform's registration rules.

django-oauth-toolkit does the protocol (oauth2_provider.cimd): on first sight of such a client_id it fetches the
document (https only, public addresses only, no redirects, a size and a time limit), makes a public client of it
and keeps it as long as the document's Cache-Control allows (within the bounds in apps.security.oauth_settings).
This module adds what /o/register/ demands, so that publishing a document is no way around it: redirect URIs pass
the same `redirect_uri_problem`, the authorization code (with refresh) is the only grant and `code` the only
response type. A client seen for the first time gets its ClientPolicy, so administrators can disable it, and an
`oauth.client_registered` audit event.

django-oauth-toolkit turns every failure to use a document into "unknown client", then does not fetch that URL
again for CIMD_FAILURE_BACKOFF_SECONDS. The person at the authorize page (often the client's own developer) is told
why instead: the reason is noted for that same time, and PlatformOAuthLibCore puts it on the page.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.core.cache import cache
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.http import HttpRequest
from oauth2_provider.cimd import CIMDError, SafeMetadataFetcher, is_cimd_client_id
from oauth2_provider.exceptions import FatalClientError
from oauth2_provider.models import Application
from oauth2_provider.oauth2_backends import OAuthLibCore
from oauth2_provider.settings import oauth2_settings
from oauthlib.oauth2.rfc6749.errors import InvalidClientIdError

from apps.compliance.audit import audit_record
from apps.security.models import ClientPolicy
from apps.security.validators import redirect_uri_problem

# The audit trail and the security events keep a client_id in 100 characters (Application.client_id takes 255): a
# longer URL would lose its client's audit events, so it is refused before anything is fetched.
MAX_CLIENT_ID_LENGTH = 100
ALLOWED_GRANT_TYPES = {"authorization_code", "refresh_token"}
_REFUSAL_KEY_PREFIX = "security:cimd-refusal:"


def _refusal_key(client_id: str) -> str:
    # Hashed: the client_id is whatever the caller sent, of any length (cache backends limit key lengths).
    return _REFUSAL_KEY_PREFIX + hashlib.sha256(client_id.encode("utf-8")).hexdigest()


def cimd_refusal_record(*, client_id: str, reason: str) -> None:
    """Remember why `client_id`'s document was refused, for as long as it will not be fetched again."""
    cache.set(_refusal_key(client_id), reason, oauth2_settings.CIMD_FAILURE_BACKOFF_SECONDS)


def cimd_refusal_describe(*, client_id: str) -> str | None:
    """The sentence for the authorize page about a metadata-document client_id that was refused, or None when
    no refusal is on record (any other unknown or disabled client stays a plain unknown client)."""
    if not oauth2_settings.CIMD_ENABLED or not is_cimd_client_id(client_id):
        return None
    reason = cache.get(_refusal_key(client_id))
    if reason is None:
        return None
    return f"The client's metadata document at {client_id} was not accepted: {reason}"


def document_problem(metadata: dict[str, Any], *, client_id: str) -> str | None:
    """Why this platform refuses a client metadata document, or None: the rules of /o/register/, and those
    django-oauth-toolkit applies after this (which it does not explain), so that the user is told which one failed."""
    if metadata.get("client_id") != client_id:
        claimed = str(metadata.get("client_id"))[:MAX_CLIENT_ID_LENGTH]
        return f"its client_id is {claimed!r}; it must be the document's own URL."
    if metadata.get("token_endpoint_auth_method", "none") != "none":
        return "its token_endpoint_auth_method must be 'none': a client identified by its document has no secret."
    if "client_secret" in metadata or "client_secret_expires_at" in metadata:
        return "it must not contain a client_secret."
    uris = metadata.get("redirect_uris")
    if not isinstance(uris, list) or not uris:
        return "redirect_uris must be a non-empty list."
    for uri in uris:
        problem = redirect_uri_problem(uri)
        if problem:
            return f"redirect URI {problem}."
    grants = metadata.get("grant_types", ["authorization_code"])
    if not isinstance(grants, list) or "authorization_code" not in grants:
        return "grant_types must include authorization_code."
    for grant in grants:
        if grant not in ALLOWED_GRANT_TYPES:
            return f"the {grant!r} grant is not offered (OAuth 2.1): only authorization_code and refresh_token."
    if metadata.get("response_types", ["code"]) != ["code"]:
        return "only the response type 'code' is offered."
    if not isinstance(metadata.get("client_name", ""), str):
        return "client_name must be a string."
    return None


class PlatformCIMDPermission:
    """Which client_id URLs may be looked up at all (CIMD_REGISTRATION_PERMISSION_CLASSES): asked before any
    fetch."""

    def has_permission(self, request: Any, client_id: str) -> bool:
        if len(client_id) > MAX_CLIENT_ID_LENGTH:
            cimd_refusal_record(
                client_id=client_id,
                reason=f"a client_id URL may be at most {MAX_CLIENT_ID_LENGTH} characters long here.",
            )
            return False
        return True


class PlatformMetadataFetcher(SafeMetadataFetcher):
    """django-oauth-toolkit's SSRF-hardened fetcher (CIMD_METADATA_FETCHER), then the platform's rules on the
    document; every refusal is noted for the authorize page (apps.security.cimd_refusals)."""

    def __init__(self) -> None:
        self._answer_problem: str | None = None

    def fetch(self, client_id: str) -> tuple[dict[str, Any], int]:
        try:
            metadata, max_age = super().fetch(client_id)
        except CIMDError:
            cimd_refusal_record(client_id=client_id, reason=self._answer_problem or self._unreachable())
            raise
        problem = document_problem(metadata, client_id=client_id)
        if problem is not None:
            cimd_refusal_record(client_id=client_id, reason=problem)
            raise CIMDError(problem)
        return metadata, max_age

    def _read_document(self, response: Any) -> tuple[dict[str, Any], int]:
        # Overrides the fetcher's check of the answer (status, JSON media type, size, an object) only to keep its
        # reason, which names nothing but what a host already vetted as public answered. The reasons before an
        # answer (name resolution, a non-public address, the connection) are not shown: the authorize page must
        # not become a way to map the network behind this server. tests/security/test_client_metadata.py pins it.
        try:
            return super()._read_document(response)
        except CIMDError as error:
            self._answer_problem = f"{error}."
            raise

    @staticmethod
    def _unreachable() -> str:
        return (
            "it could not be fetched. It must be served over https by a public host, without redirects, "
            f"within {oauth2_settings.CIMD_FETCH_TIMEOUT_SECONDS} seconds."
        )


class PlatformOAuthLibCore(OAuthLibCore):
    """django-oauth-toolkit's bridge between Django and oauthlib (OAUTH2_BACKEND_CLASS), which on the authorize
    page names the reason a client's metadata document was refused where the library says only "Invalid client_id
    parameter value"."""

    def validate_authorization_request(self, request: HttpRequest) -> tuple[list[str], dict[str, Any]]:
        try:
            return super().validate_authorization_request(request)
        except FatalClientError as error:
            if isinstance(error.oauthlib_error, InvalidClientIdError):
                refusal = cimd_refusal_describe(client_id=error.oauthlib_error.client_id or "")
                if refusal is not None:
                    error.oauthlib_error.description = refusal
            raise


@receiver(post_save, sender=Application, dispatch_uid="security-cimd-client-registered")
def cimd_client_registered(sender: Any, instance: Application, created: bool, **kwargs: Any) -> None:
    """A client first seen by its metadata document is registered as /o/register/ registers one: a ClientPolicy
    (what the admin disables) and its audit event."""
    if not created or instance.registration_source != Application.RegistrationSource.CIMD:
        return
    # No registration_ip: the request that first presents a metadata-document client_id is usually a person's
    # browser at the authorize page, not the client, and ClientPolicy is no place for a person's address.
    ClientPolicy.objects.get_or_create(application=instance)
    audit_record(
        action="oauth.client_registered",
        outcome="success",
        client_id=instance.client_id,
        target=f"client:{instance.client_id}",
        detail={"registration": "client_id_metadata_document", "client_name": instance.name},
    )
