"""The privacy pages (/privacy/). Thin: each view calls one service."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST
from oauth2_provider.models import Application

from apps.compliance import services, tasks
from apps.compliance.api import export_response
from apps.compliance.models import DataSubjectRequest
from apps.core.errors import ApplicationError
from apps.security.selectors import applications_authorised
from apps.security.services import application_revoke_for_user


@login_required
def privacy_home(request: HttpRequest) -> HttpResponse:
    return _privacy_page(request)


def _privacy_page(request: HttpRequest, *, erase_error: str = "", status: int = 200) -> HttpResponse:
    # The download column needs each archive's dates, not its content (a ZIP of megabytes).
    own = DataSubjectRequest.objects.filter(subject=request.user).with_archive_dates().select_related("filed_by")
    return render(
        request,
        "compliance/privacy.html",
        {
            "held": services.subject_inventory(user=request.user),
            "applications": applications_authorised(user=request.user),
            "requests": own[:20],
            "open_erasure": own.filter(kind="erasure", status__in=DataSubjectRequest.OPEN).first(),
            "now": timezone.now(),
            "grace_hours": f"{settings.ERASURE_GRACE_HOURS:g} hours",
            "erase_error": erase_error,
        },
        status=status,
    )


@login_required
@require_POST
def privacy_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    application = get_object_or_404(Application, pk=pk)
    revoked = application_revoke_for_user(user=request.user, application=application)
    name = application.name or application.client_id
    if any(revoked.values()):
        messages.success(request, f"{name} can no longer use your account: its access was revoked.")
    else:
        messages.error(request, "That application holds no permission from you; there was nothing to revoke.")
    return HttpResponseRedirect(reverse("privacy"))


@login_required
@require_POST
def privacy_export(request: HttpRequest) -> HttpResponse:
    try:
        created = services.subject_request_create(subject=request.user, kind=DataSubjectRequest.Kind.EXPORT)
        tasks.subject_request_start(created)
        messages.success(request, "Your export is being prepared. It appears below when it is ready.")
    except ApplicationError as error:
        messages.error(request, error.message)
    return HttpResponseRedirect(reverse("privacy"))


@login_required
@require_POST
def privacy_erasure(request: HttpRequest) -> HttpResponse:
    try:
        created = services.subject_request_create(
            subject=request.user, kind=DataSubjectRequest.Kind.ERASURE, password=request.POST.get("password", "")
        )
        tasks.subject_request_start(created)
        messages.success(
            request,
            f"Your account and everything held about you will be erased on "
            f"{created.scheduled_for:%d %B %Y at %H:%M} UTC. You can cancel until then.",
        )
    except ApplicationError as error:
        if error.extra.get("field") == "password":  # shown at the field, where the person is looking
            return _privacy_page(request, erase_error=error.message, status=400)
        messages.error(request, error.message)
    return HttpResponseRedirect(reverse("privacy"))


@login_required
@require_POST
def privacy_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    found = get_object_or_404(DataSubjectRequest, pk=pk, subject=request.user)
    try:
        services.subject_request_cancel(request=found, by=request.user)
        messages.success(request, f"Your {found.kind} request was cancelled.")
    except ApplicationError as error:
        messages.error(request, error.message)
    return HttpResponseRedirect(reverse("privacy"))


@login_required
def privacy_download(request: HttpRequest, pk: int) -> HttpResponse:
    found = get_object_or_404(DataSubjectRequest, pk=pk, subject=request.user)
    try:
        return export_response(services.subject_export_download(request=found, by=request.user))
    except ApplicationError as error:
        messages.error(request, error.message)
        return HttpResponseRedirect(reverse("privacy"))
