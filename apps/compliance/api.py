"""The privacy and compliance JSON API (Django REST framework), for integrations. Thin: each view calls a service.

Authentication: a signed-in session (with CSRF) or an OAuth bearer token. Reading and exporting need
`music21:read`, erasure `music21:write`, reports `music21:admin` (or a staff session).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse
from django.utils import timezone
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotAuthenticated
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from apps.compliance import reports, services, tasks
from apps.compliance.models import DataSubjectRequest
from apps.core.errors import ApplicationError, NotFound, RateLimited, ServiceUnavailable
from apps.security import scopes
from apps.security.permissions import InsufficientScope, token_scopes
from apps.security.staff_otp import IsVerifiedStaffOrAdminToken


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Domain errors become JSON with their code and message; a rate limit says when to retry, and so does the
    database being unreachable (checking a bearer token needs it): a 503, not Django's HTML 500 page."""
    if isinstance(exc, OperationalError | InterfaceError):
        unavailable = ServiceUnavailable("The database is unavailable; try again in a moment.")
        response = Response(unavailable.as_dict(), status=unavailable.http_status)
        response["Retry-After"] = str(unavailable.RETRY_AFTER)
        return response
    if isinstance(exc, ApplicationError):
        response = Response(exc.as_dict(), status=exc.http_status)
        if isinstance(exc, RateLimited):
            response["Retry-After"] = str(max(1, round(exc.retry_after + 0.5)))
        return response
    if isinstance(exc, RequestDataTooBig):
        # Django refuses a body past DATA_UPLOAD_MAX_MEMORY_SIZE when it is first read (looking for a token in it,
        # before any view), and would answer its bare HTML 400: here it is the JSON error naming the limit.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        message = f"The request body is larger than the {limit:,} bytes this API accepts."
        return Response({"status": "error", "error": "request_too_large", "message": message}, status=413)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, APIException):
        response.data = {"status": "error", "error": exc.default_code, "message": _message(exc.detail)}
    return response


def _message(detail: Any) -> str:
    """`{"kind": ["\"copy\" is not a valid choice."]}` -> `kind: "copy" is not a valid choice.`"""
    if isinstance(detail, dict):
        return " ".join(f"{field}: {_message(problem)}" for field, problem in detail.items())
    if isinstance(detail, list):
        return " ".join(_message(problem) for problem in detail)
    return str(detail)


class HasScope(BasePermission):
    """Tokens need the view's scope (for the method); sessions are the person themselves."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not request.user or not request.user.is_authenticated:
            raise NotAuthenticated("Sign in, or send an OAuth bearer token.")
        granted = token_scopes(request)
        if granted is None:
            return True
        needed = view.required_scope(request)
        if not scopes.has_scope(granted, needed):
            raise InsufficientScope(needed, request)
        return True


class RequestSerializer(serializers.ModelSerializer):
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = DataSubjectRequest
        fields = ["id", "kind", "status", "requested_at", "due_at", "scheduled_for", "completed_at", "download_url"]

    def get_download_url(self, obj: DataSubjectRequest) -> str | None:
        """Only while the archive is offered: once its download window closed (and retention purged it), the URL
        would answer 404."""
        archive = getattr(obj, "archive", None)
        if archive is None or archive.expires_at <= timezone.now():
            return None
        return f"/privacy/api/requests/{obj.pk}/download"


class NewRequestSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=DataSubjectRequest.Kind.choices)
    password = serializers.CharField(required=False, allow_blank=True, write_only=True)


class _PrivacyView(APIView):
    permission_classes = [HasScope]

    def required_scope(self, request: Request) -> str:
        return scopes.READ

    def _own_request(self, request: Request, pk: int) -> DataSubjectRequest:
        found = DataSubjectRequest.objects.filter(pk=pk, subject=request.user).with_archive_dates().first()
        if found is None:
            raise NotFound(f"You have no request #{pk}.")
        return found


class InventoryView(_PrivacyView):
    def get(self, request: Request) -> Response:
        return Response({"status": "success", "held": services.subject_inventory(user=request.user)})


class RequestListView(_PrivacyView):
    def required_scope(self, request: Request) -> str:
        # The body is whatever the caller sent: anything but an object is refused by the serializer, with a reason.
        kind = request.data.get("kind") if isinstance(request.data, dict) else None
        if request.method == "POST" and kind == DataSubjectRequest.Kind.ERASURE:
            return scopes.WRITE
        return scopes.READ

    def get(self, request: Request) -> Response:
        rows = DataSubjectRequest.objects.filter(subject=request.user).with_archive_dates()
        return Response({"status": "success", "requests": RequestSerializer(rows, many=True).data})

    def post(self, request: Request) -> Response:
        incoming = NewRequestSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        created = services.subject_request_create(
            subject=request.user,
            kind=incoming.validated_data["kind"],
            password=incoming.validated_data.get("password"),
            via="api",
        )
        tasks.subject_request_start(created)
        created.refresh_from_db()
        return Response(
            {"status": "success", "request": RequestSerializer(created).data}, status=status.HTTP_201_CREATED
        )


class RequestDetailView(_PrivacyView):
    def get(self, request: Request, pk: int) -> Response:
        return Response({"status": "success", "request": RequestSerializer(self._own_request(request, pk)).data})


class RequestCancelView(_PrivacyView):
    def required_scope(self, request: Request) -> str:
        return scopes.WRITE

    def post(self, request: Request, pk: int) -> Response:
        found = self._own_request(request, pk)
        services.subject_request_cancel(request=found, by=request.user)
        found.refresh_from_db()
        return Response({"status": "success", "request": RequestSerializer(found).data})


class RequestDownloadView(_PrivacyView):
    def get(self, request: Request, pk: int) -> HttpResponse:
        archive = services.subject_export_download(request=self._own_request(request, pk), by=request.user)
        return export_response(archive)


def export_response(archive: Any) -> HttpResponse:
    response = HttpResponse(bytes(archive.content), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="music21-export-{archive.request_id}.zip"'
    response["Cache-Control"] = "no-store"
    return response


class ReportSerializer(serializers.Serializer):
    report_type = serializers.ChoiceField(choices=reports.REPORT_TYPES)
    start_date = serializers.DateField()
    end_date = serializers.DateField()


class ReportView(APIView):
    """POST /compliance/report {"report_type", "start_date", "end_date"} -> the report as JSON."""

    permission_classes = [IsVerifiedStaffOrAdminToken]

    def post(self, request: Request) -> Response:
        incoming = ReportSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        return Response(reports.report_build(**incoming.validated_data))
