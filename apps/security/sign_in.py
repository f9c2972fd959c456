"""Signing in from an address that is blocked (apps.security.events) is refused before any password is checked.

django-axes locks one username from one address after LOGIN_FAILURE_LIMIT failures, which stops guessing one
person's password but not spraying: one wrong password each for many usernames never locks any of them. Each
failed sign-in is also a `login_failure` event charged to the address, and SECURITY_BLOCK_THRESHOLD of them block
it; this is where that block is applied to signing in. Only the address is refused: the usernames it tried sign in
from anywhere else.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers

from apps.compliance.audit import audit_record
from apps.core import metrics
from apps.security.events import address_blocked_until
from apps.security.oauth_replies import client_ip


def sign_in_paused_when_blocked(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A sign-in page (the site's, the admin's) that a blocked address is refused, form and submission alike, with
    a page saying why and until when (429, with Retry-After)."""

    @functools.wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        ip = client_ip(request)
        until = address_blocked_until(ip=ip)
        if until is None:
            return view(request, *args, **kwargs)
        metrics.BLOCKED.labels(reason="blocked").inc()
        if request.method == "POST":
            audit_record(action="auth.login", outcome="blocked", ip=ip)
        context = {"until": until.strftime("%H:%M:%S UTC"), "until_time": until}
        response = render(request, "registration/address_blocked.html", context, status=429)
        response["Retry-After"] = str(max(1, math.ceil(until.timestamp() - time.time())))
        add_never_cache_headers(response)
        return response

    return guarded
