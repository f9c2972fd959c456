"""The staff second factor (django-otp): a TOTP authenticator app, and recovery codes for the day it is lost.

Staff pages (the admin, /server_stats, the compliance report) accept a session only once it is verified by a
second factor; a music21:admin bearer token needs none (the consent that issued it is its own sign-in). A staff
member signs in with a password as before, then gives a code from the app here. One with no device yet is led to
enrol one: a QR code and the secret as text, a code to prove the app holds it, then ten recovery codes, shown once,
each usable once. An administrator resets a lost device by deleting the person's TOTP device in the admin (they
enrol again at their next sign-in), or gives them a recovery code with `manage.py addstatictoken <username>`.
"""

from __future__ import annotations

from base64 import b32encode
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import django_otp
import segno
from django import forms
from django.contrib import admin
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request

from apps.compliance.audit import audit_record
from apps.security.events import security_event_record
from apps.security.models import SecurityEvent
from apps.security.permissions import IsStaffOrAdminToken, token_scopes

RECOVERY_CODE_COUNT = 10
# The recovery codes just issued, kept in the session only until the page that shows them once.
_NEW_CODES_SESSION_KEY = "staff_otp_new_recovery_codes"
TOTP_DEVICE_NAME = "Authenticator app"
RECOVERY_DEVICE_NAME = "Recovery codes"

# --- Who counts as verified staff ------------------------------------------------------------------------------


def staff_is_verified(user: Any) -> bool:
    """Whether `user` (a request's user, as django-otp's middleware leaves it) is active staff whose session was
    verified by a second factor: the one test every staff-only page that takes a session applies."""
    is_verified = getattr(user, "is_verified", None)
    return bool(user.is_active and user.is_staff and is_verified is not None and is_verified())


def staff_needs_second_factor(user: Any) -> bool:
    """Whether `user` signed in as active staff with a password only, so far."""
    return bool(user.is_authenticated and user.is_active and user.is_staff and not staff_is_verified(user))


def staff_verified_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A page for verified staff only: the admin site's own guard, so that anyone else is sent to its sign-in, and
    from there to the second factor."""
    return admin.site.admin_view(view)


class IsVerifiedStaffOrAdminToken(IsStaffOrAdminToken):
    """Operators' JSON views: a staff session verified by its second factor, or a music21:admin bearer token."""

    def has_permission(self, request: Request, view: Any) -> bool:
        super().has_permission(request, view)
        if token_scopes(request) is None and not staff_is_verified(request.user):
            raise PermissionDenied("Staff sessions need the second factor: sign in at /admin/ and give your code.")
        return True


def second_factor_redirect(request: HttpRequest, *, next_url: str) -> HttpResponseRedirect:
    """Where a staff member signed in with a password only goes next: the code, or enrolment."""
    query = urlencode({"next": next_url}) if next_url else ""
    return HttpResponseRedirect(reverse("staff-second-factor") + (f"?{query}" if query else ""))


# --- Services ---------------------------------------------------------------------------------------------------


def staff_totp_device(*, user: Any) -> TOTPDevice | None:
    """The staff member's confirmed authenticator app, if any."""
    return TOTPDevice.objects.devices_for_user(user, confirmed=True).first()


def staff_totp_enrolment_start(*, user: Any) -> TOTPDevice:
    """The unconfirmed device being enrolled: the same secret until confirmed, so a reload shows the same QR."""
    device = TOTPDevice.objects.devices_for_user(user, confirmed=False).first()
    return device or TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False)


def staff_totp_enrolment_confirm(*, device: TOTPDevice, token: str, ip: str | None) -> list[str] | None:
    """Confirms `device` if `token` is its current code, and issues fresh recovery codes (returned); None if the
    code is wrong."""
    with transaction.atomic():
        if not device.verify_token(token):
            return None
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        codes = staff_recovery_codes_issue(user=device.user)
    audit_record(action="auth.second_factor_enrolled", outcome="success", user=device.user, ip=ip)
    return codes


@transaction.atomic
def staff_recovery_codes_issue(*, user: Any) -> list[str]:
    """Replaces the staff member's recovery codes with RECOVERY_CODE_COUNT new ones, each usable once."""
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name=RECOVERY_DEVICE_NAME, confirmed=True)
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
    return codes


def staff_second_factor_verify(*, user: Any, token: str, ip: str | None) -> Device | None:
    """The device that accepts `token` (a code from the app, or a recovery code, which is then used up), or None.
    Each device counts its failures and refuses codes for a growing while after them (django-otp's throttling); a
    wrong code is also a failed sign-in of that person (a security event, which counts toward blocking them)."""
    token = "".join(token.split())
    for device in django_otp.devices_for_user(user, confirmed=True):
        verified = django_otp.verify_token(user, device.persistent_id, token)
        if verified is not None:
            audit_record(action="auth.second_factor", outcome="success", user=user, ip=ip)
            return verified
    security_event_record(kind=SecurityEvent.Kind.LOGIN_FAILURE, user=user, ip=ip, factor="second")
    audit_record(action="auth.second_factor", outcome="failure", user=user, ip=ip)
    return None


# --- Pages ------------------------------------------------------------------------------------------------------


class CodeForm(forms.Form):
    otp_token = forms.CharField(
        label="Code",
        max_length=32,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
    )


def _next_url(request: HttpRequest) -> str:
    wanted = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return wanted
    return reverse("admin:index")


def _staff_only(request: HttpRequest) -> HttpResponse | None:
    """The answer for anyone who is not a signed-in staff member: the admin's sign-in."""
    user = request.user
    if user.is_authenticated and user.is_active and user.is_staff:
        return None
    return HttpResponseRedirect(reverse("admin:login") + "?" + urlencode({"next": _next_url(request)}))


@never_cache
@csrf_protect
def second_factor(request: HttpRequest) -> HttpResponse:
    """The code asked after the password, from the authenticator app or a recovery code."""
    if (refusal := _staff_only(request)) is not None:
        return refusal
    if staff_totp_device(user=request.user) is None:
        query = urlencode({"next": _next_url(request)})
        return HttpResponseRedirect(f"{reverse('staff-second-factor-enrol')}?{query}")
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device = staff_second_factor_verify(
            user=request.user, token=form.cleaned_data["otp_token"], ip=request.META.get("REMOTE_ADDR")
        )
        if device is not None:
            request.session.cycle_key()  # the session gains staff rights: a new key, as at sign-in
            django_otp.login(request, device)
            return HttpResponseRedirect(_next_url(request))
        form.add_error(
            "otp_token",
            "That code is not right, or was already used. Enter the 6-digit code your app shows now, or an unused "
            "recovery code. After a wrong code, wait a few seconds before the next try.",
        )
    return render(request, "security/second_factor.html", {"form": form, "next": _next_url(request)})


@never_cache
@csrf_protect
def second_factor_enrol(request: HttpRequest) -> HttpResponse:
    """First sign-in of a staff member without a device: the app's QR code and secret, then a code to confirm."""
    if (refusal := _staff_only(request)) is not None:
        return refusal
    if staff_totp_device(user=request.user) is not None:
        # Enrolling another device needs the first one: an administrator deletes a lost one in the admin.
        return HttpResponseRedirect(f"{reverse('staff-second-factor')}?{urlencode({'next': _next_url(request)})}")
    device = staff_totp_enrolment_start(user=request.user)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        codes = staff_totp_enrolment_confirm(
            device=device, token=form.cleaned_data["otp_token"], ip=request.META.get("REMOTE_ADDR")
        )
        if codes is not None:
            request.session.cycle_key()  # the session gains staff rights: a new key, as at sign-in
            django_otp.login(request, device)
            request.session[_NEW_CODES_SESSION_KEY] = codes
            query = urlencode({"next": _next_url(request)})
            return HttpResponseRedirect(f"{reverse('staff-recovery-codes')}?{query}")
        form.add_error(
            "otp_token",
            "That code is not right. Enter the 6-digit code your app shows now for this account; after a wrong "
            "code, wait a few seconds before the next try.",
        )
    secret = b32encode(device.bin_key).decode()
    return render(
        request,
        "security/second_factor_enrol.html",
        {
            "form": form,
            "next": _next_url(request),
            "qr_code": segno.make(device.config_url, error="m").svg_data_uri(scale=5),
            "secret": " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        },
    )


@never_cache
@csrf_protect
def recovery_codes(request: HttpRequest) -> HttpResponse:
    """The recovery codes just issued, shown once; a verified staff member can replace them with new ones."""
    if not staff_is_verified(request.user):
        if (refusal := _staff_only(request)) is not None:
            return refusal
        return second_factor_redirect(request, next_url=request.get_full_path())
    if request.method == "POST":
        request.session[_NEW_CODES_SESSION_KEY] = staff_recovery_codes_issue(user=request.user)
        return HttpResponseRedirect(f"{reverse('staff-recovery-codes')}?{urlencode({'next': _next_url(request)})}")
    codes = request.session.pop(_NEW_CODES_SESSION_KEY, None)
    remaining = StaticToken.objects.filter(device__user=request.user).count()
    return render(
        request,
        "security/recovery_codes.html",
        {"codes": codes, "remaining": remaining, "next": _next_url(request)},
    )
