"""The admin site of the platform: Django's admin behind the staff second factor, with the dashboard as its index."""

from __future__ import annotations

from typing import Any

from django.contrib.admin.forms import AdminAuthenticationForm
from django.http import HttpRequest, HttpResponse
from django_otp.admin import OTPAdminSite

from apps.compliance.dashboard import dashboard_context
from apps.security.staff_otp import second_factor_redirect, staff_needs_second_factor


class PlatformAdminSite(OTPAdminSite):
    """Every admin page needs a staff account verified by its second factor in this session (OTPAdminSite's
    `has_permission`). The password comes first, on Django's own login form; the code is a step of its own
    (apps.security.staff_otp), which also enrols a staff member who has no device yet."""

    site_header = "music21 platform"
    site_title = "music21 platform admin"
    index_title = "Administration"
    site_url = "/"
    login_form = AdminAuthenticationForm
    login_template = None  # Django's admin/login.html

    def __init__(self, name: str = "admin") -> None:
        # OTPAdminSite names itself "otpadmin"; the admin's URLs are reversed as "admin:..." everywhere.
        super().__init__(name)

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if request.method == "GET" and staff_needs_second_factor(request.user):
            return second_factor_redirect(request, next_url=request.GET.get("next", ""))
        return super().login(request, extra_context)

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return super().index(request, {**dashboard_context(request.user), **(extra_context or {})})
