"""What every endpoint of the OAuth provider answers alike: its errors as JSON (RFC 6749 section 5.2, RFC 7591
section 3.2.2), the refusal of a blocked address, of a body too large to read, and the headers that keep a secret out
of caches and let browser-based clients read an answer."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse

from apps.core.errors import Blocked
from apps.security.events import block_check


def cors(response: HttpResponse, methods: str = "POST, OPTIONS") -> HttpResponse:
    # Browser-based MCP clients (the MCP Inspector) register and discover from another origin; these endpoints take
    # no cookies.
    response["Access-Control-Allow-Origin"] = "*"
    response["Access-Control-Allow-Headers"] = "Content-Type, Authorization, MCP-Protocol-Version"
    response["Access-Control-Allow-Methods"] = methods
    return response


def oauth_error(error: str, description: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": error, "error_description": description}, status=status)


def client_ip(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def blocked_response(request: HttpRequest) -> JsonResponse | None:
    """403 for an address blocked after repeated security violations (see apps.security.events)."""
    try:
        block_check(ip=client_ip(request), client_id=None)
    except Blocked as error:
        return oauth_error("access_denied", str(error), status=403)
    return None


def body_too_large(request: HttpRequest, error: str) -> JsonResponse | None:
    """`error` naming the limit when the request's body is past DATA_UPLOAD_MAX_MEMORY_SIZE, or None. Django
    refuses such a body when it is first read, and would answer its bare HTML "Bad Request (400)"; these endpoints
    answer in their RFC's JSON (RFC 6749 section 5.2, RFC 7591 section 3.2.2)."""
    try:
        request.body  # noqa: B018  # read here, where the refusal can be answered
    except RequestDataTooBig:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return oauth_error(error, f"The request body is larger than the {limit:,} bytes this endpoint accepts.")
    return None


def not_cached(response: HttpResponse) -> HttpResponse:
    # A registration's answers carry the client secret and the registration access token: like a token response
    # (RFC 6749 section 5.1; RFC 7591 and 7592 show the same header), no cache on the way may keep them.
    response["Cache-Control"] = "no-store"
    return response
