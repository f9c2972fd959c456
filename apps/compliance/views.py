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

from apps.compliance import services, tasks
from apps.compliance.api import export_response
from apps.compliance.models import DataSubjectRequest
from apps.core.errors import ApplicationError


@login_required
def privacy_home(request: HttpRequest) -> HttpResponse:
    own = DataSubjectRequest.objects.filter(subject=request.user).select_related("archive")
    return render(
        request,
        "compliance/privacy.html",
        {
            "held": services.subject_inventory(user=request.user),
            "requests": own[:20],
            "open_erasure": own.filter(kind="erasure", status__in=DataSubjectRequest.OPEN).first(),
            "now": timezone.now(),
            "grace_hours": f"{settings.ERASURE_GRACE_HOURS:g} hours",
        },
    )


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
