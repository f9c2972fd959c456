"""The admin site of the platform: Django's admin behind the staff second factor, with the dashboard as its index."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.contrib import messages
from django.contrib.admin import ModelAdmin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ERROR_FLAG, ChangeList
from django.db import DataError
from django.db.models.base import ModelBase
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

    def register(self, model_or_iterable: ModelBase | Iterable[ModelBase], *args: Any, **options: Any) -> None:
        super().register(model_or_iterable, *args, **options)
        models = [model_or_iterable] if isinstance(model_or_iterable, ModelBase) else model_or_iterable
        for model in models:
            model_admin = self._registry[model]
            model_admin.get_changelist_instance = _filters_checked(model_admin)
            model_admin.get_actions = _actions_checked(model_admin)


def _actions_checked(model_admin: ModelAdmin) -> Callable[[HttpRequest], dict[str, Any]]:
    """`model_admin`'s actions, those that declare no permission offered only to staff who may change what the
    list holds. Django offers an action that names no permission to whoever may see the list, and the apps we
    embed declare none on actions that change or delete: django-oauth-toolkit's "revoke tokens", django-celery-
    beat's "enable", "disable", "toggle" and "run" (which runs retention, deleting audit events), django-axes'
    "clean up expired attempts". An action of ours that only reads declares the view permission."""
    get_actions = model_admin.get_actions

    def checked(request: HttpRequest) -> dict[str, Any]:
        actions = get_actions(request)
        if model_admin.has_change_permission(request):
            return actions
        return {name: entry for name, entry in actions.items() if getattr(entry[0], "allowed_permissions", None)}

    return checked


def _filters_checked(model_admin: ModelAdmin) -> Callable[[HttpRequest], ChangeList]:
    """`model_admin`'s list, refusing a filter the database cannot apply as Django refuses a filter on no field:
    the whole list (its `?e=1` redirect), with a message naming the problem, not a server error. Django catches
    what fails while the filters are built, but a value fails only when the list is read: a NUL character in a
    text filter (PostgreSQL refuses it), a year past 9999 in a date drill-down, a filter of another app that turns
    its value into an id. Every list of every app (ours, django-axes', django-auditlog's...) has such filters."""
    changelist_instance = model_admin.get_changelist_instance

    def checked(request: HttpRequest) -> ChangeList:
        asked = [key for key in request.GET if key != ERROR_FLAG]
        with_nul = [key for key, values in request.GET.lists() if "\x00" in key or any("\x00" in v for v in values)]
        if with_nul:
            raise _refused(request, f"{', '.join(repr(key) for key in with_nul)} holds a NUL character (%00)")
        try:
            return changelist_instance(request)
        except (DataError, OverflowError, ValueError) as exc:
            if not asked:  # not the address's doing
                raise
            raise _refused(request, f"{', '.join(asked)}: {exc}") from exc

    return checked


def _refused(request: HttpRequest, problem: str) -> IncorrectLookupParameters:
    messages.error(request, f"This list cannot be filtered as the address asks ({problem}); the whole list is shown.")
    return IncorrectLookupParameters(problem)
