"""The platform's rules on dynamic client registration (RFC 7591) and its updates (RFC 7592), beyond
django-oauth-toolkit's: what client metadata may ask for, and how many clients an address may register an hour.
The views (apps.security.registration_views) answer with them."""

from __future__ import annotations

import contextlib
import json
import time

from django.conf import settings
from django.core.cache import cache
from oauth2_provider.models import Application

from apps.core.json_input import json_parse
from apps.security.validators import redirect_uri_problem

REGISTRATION_WINDOW_SECONDS = 3600
# The grants a client may register for (SPEC: OAuth 2.1). django-oauth-toolkit would also register the device flow's,
# which this server does not offer.
OFFERED_GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
CLIENT_NAME_MAX_LENGTH = Application._meta.get_field("name").max_length


def client_metadata_problem(body: bytes) -> tuple[str, str] | None:
    """The error code and description for a registration's (or an update's) client metadata that breaks the
    platform's rules, or None; django-oauth-toolkit then checks the rest."""
    try:
        metadata = json_parse(body or b"{}")
    except ValueError as error:
        return "invalid_client_metadata", f"The request body must be a JSON object; it is not JSON: {error}."
    if not isinstance(metadata, dict):
        return "invalid_client_metadata", "The request body must be a JSON object."
    name = metadata.get("client_name", "")
    # django-oauth-toolkit stores any value as the application's name: a list or a number became its Python
    # text ("['x']"), and one too long was refused as "name", a field the client never sent.
    if not isinstance(name, str):
        return "invalid_client_metadata", f"client_name must be a string; it is {json.dumps(name)[:100]}."
    if len(name) > CLIENT_NAME_MAX_LENGTH:
        return (
            "invalid_client_metadata",
            f"client_name is {len(name)} characters; at most {CLIENT_NAME_MAX_LENGTH} are kept.",
        )
    uris = metadata.get("redirect_uris", [])
    for uri in uris if isinstance(uris, list) else []:
        problem = redirect_uri_problem(uri)
        if problem:
            return "invalid_redirect_uri", problem
    grants = metadata.get("grant_types", [])
    for grant in grants if isinstance(grants, list) else []:
        if grant in ("implicit", "password"):
            return "invalid_client_metadata", f"The {grant} grant is not offered (OAuth 2.1)."
        if grant not in OFFERED_GRANT_TYPES:
            return (
                "invalid_client_metadata",
                f"The {grant!r} grant is not offered here; the grants are {', '.join(OFFERED_GRANT_TYPES)}.",
            )
    # RFC 7591's default method is client_secret_basic (django-oauth-toolkit's too).
    public = metadata.get("token_endpoint_auth_method", "client_secret_basic") == "none"
    if public and isinstance(grants, list) and "client_credentials" in grants:
        return (
            "invalid_client_metadata",
            "The client_credentials grant is for confidential clients: with token_endpoint_auth_method 'none' a "
            "client has no secret to authenticate with. Use client_secret_basic or client_secret_post.",
        )
    if metadata.get("response_types") not in (None, ["code"]):
        return "invalid_client_metadata", "Only the response type 'code' is offered."
    return None


def registration_key(ip: str) -> str:
    """The cache key counting `ip`'s registrations of the current hour."""
    window = int(time.time() // REGISTRATION_WINDOW_SECONDS)
    return f"{settings.GUARD_NAMESPACE}:oauth-registrations:{ip}:{window}"


def registration_reserve(key: str) -> int | None:
    """Takes one of the address's registrations of this hour (OAUTH_REGISTRATIONS_PER_HOUR): None when it may
    register, else the seconds until it may. Taken before the registration (and given back if it does not happen),
    so that concurrent requests cannot register more than the limit."""
    cache.add(key, 0, REGISTRATION_WINDOW_SECONDS)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, REGISTRATION_WINDOW_SECONDS)
        count = 1
    if count > settings.OAUTH_REGISTRATIONS_PER_HOUR:
        return REGISTRATION_WINDOW_SECONDS - int(time.time() % REGISTRATION_WINDOW_SECONDS)
    return None


def registration_release(key: str) -> None:
    """Gives back a registration that did not happen: only clients registered count toward the limit, so that a
    developer correcting a request django-oauth-toolkit refused is not locked out by the attempts."""
    with contextlib.suppress(ValueError):  # the hour's count expired meanwhile
        cache.decr(key)
