from __future__ import annotations

import base64
from contextvars import ContextVar
from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from apps.compliance.admin import PlatformUserAdmin, ReadOnlyInline
from apps.compliance.audit import audit_record, subject_for
from apps.compliance.display import audit_actions_register
from apps.core.errors import ApplicationError
from apps.tools.invocation import Caller, invoke_tool
from apps.tools.models import Score
from apps.tools.registry import TOOLS

# The staff member whose change page is being drawn: a read-only field's callable receives only the object, and the
# notation must be rendered (and audited) as that staff member's access.
_viewer: ContextVar[Any] = ContextVar("score_admin_viewer", default=None)


@admin.register(Score)
class ScoreAdmin(admin.ModelAdmin):
    list_display = ("score_id", "owner", "title", "source_format", "size", "created_at")
    list_filter = ("source_format", "derivation", "created_at")
    search_fields = ("score_id", "title", "composer", "owner__username")
    list_select_related = ("owner",)
    date_hierarchy = "created_at"
    readonly_fields = (
        "notation",
        "download",
        "owner",
        "score_id",
        "source_format",
        "source_origin",
        "content_sha256",
        "derived_from",
        "derivation",
        "parts_count",
        "measures_count",
        "notes_count",
        "lowest_pitch",
        "highest_pitch",
        "key_signatures",
        "time_signatures",
        "duration_quarters",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("notation", "download", "owner", "score_id", "title", "composer")}),
        (
            "Summary",
            {
                "fields": (
                    "parts_count",
                    "measures_count",
                    "notes_count",
                    "lowest_pitch",
                    "highest_pitch",
                    "key_signatures",
                    "time_signatures",
                    "duration_quarters",
                )
            },
        ),
        (
            "Source",
            {
                "fields": (
                    "source_format",
                    "source_origin",
                    "content_sha256",
                    "derived_from",
                    "derivation",
                    "created_at",
                    "updated_at",
                )
            },
        ),
    )

    @admin.display(description="size", ordering="notes_count")
    def size(self, obj: Score) -> str:
        return f"{obj.parts_count} parts · {obj.measures_count} measures · {obj.notes_count} notes"

    def get_queryset(self, request):
        # The list never shows the sources; they can be megabytes each.
        return super().get_queryset(request).defer(*Score.SOURCE_FIELDS)

    def has_add_permission(self, request) -> bool:  # scores are imported through the tools
        return False

    def change_view(self, request: HttpRequest, object_id: str, *args: Any, **kwargs: Any) -> HttpResponse:
        token = _viewer.set(request.user)
        try:
            response = super().change_view(request, object_id, *args, **kwargs)
            # Rendered here, while the viewer is known: the notation is drawn inside the template.
            if hasattr(response, "render") and not response.is_rendered:
                response.render()
            return response
        finally:
            _viewer.reset(token)

    @admin.display(description="Notation")
    def notation(self, obj: Score) -> str:
        staff = _viewer.get()
        if obj.pk is None or staff is None:
            return "-"
        # The render_score tool through the one invocation path (its time limit and breaker guard the admin page
        # too): the staff member's read of the owner's score, audited as theirs with the owner as its subject.
        caller = Caller.administrator(staff, owner=obj.owner)
        try:
            svg = invoke_tool("render_score", {"score_id": obj.score_id}, caller=caller)["svg"]
        except ApplicationError as exc:
            return f"Cannot render: {exc.message}"
        # An <img> with a data URI: whatever text the score carries, a script inside the SVG never runs.
        encoded = base64.b64encode(svg.encode("utf-8")).decode("ascii")
        return format_html(
            '<img class="notation" src="data:image/svg+xml;base64,{}" alt="Notation of {}" width="840">',
            encoded,
            obj.score_id,
        )

    @admin.display(description="Source")
    def download(self, obj: Score) -> str:
        if obj.pk is None:
            return "-"
        url = reverse("admin:tools_score_source", args=[obj.pk])
        return format_html('<a href="{}" class="download-source">Download the source as stored</a>', url)

    def get_urls(self) -> list[Any]:
        extra = [
            path(
                "<int:pk>/source/",
                self.admin_site.admin_view(self.source_view),
                name="tools_score_source",
            )
        ]
        return extra + super().get_urls()

    def source_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The score's source byte for byte, for staff who may view scores."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        score = get_object_or_404(Score.objects.select_related("owner"), pk=pk)
        source = score.source
        # The staff member's read of the person's score, as the notation preview's: audited as theirs, naming the
        # person by pseudonym (her export's administrator_events, the audit list's search for her).
        owner = subject_for(score.owner)
        audit_record(
            action="admin.score_source",
            outcome="success",
            user=request.user,
            target=f"score:{score.score_id[:128]}",
            detail={"subject": owner.pseudonym if owner else ""},
            transport="admin",
        )
        body = source if isinstance(source, bytes) else source.encode("utf-8")
        media = "application/octet-stream" if isinstance(source, bytes) else "text/plain; charset=utf-8"
        response = HttpResponse(body, content_type=media)
        response["Content-Disposition"] = f'attachment; filename="{score.score_id}.{score.source_format}"'
        return response


# --- What the tools add to the compliance admin ------------------------------------------------------------------

# The audit list's action filter and the dashboard's tool table offer one action per tool (read when shown: the
# registry fills at ready()).
audit_actions_register(lambda: [f"tool.{name}" for name in sorted(TOOLS)])
# ...and the administrators' reads of a person's score (ScoreAdmin.notation, Caller.administrator; its source).
audit_actions_register(lambda: ["admin.render_score", "admin.score_source"])


class ScoreInline(ReadOnlyInline):
    model = Score
    fields = ("score_id", "title", "source_format", "derivation", "created_at")
    readonly_fields = fields
    fk_name = "owner"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).defer(*Score.SOURCE_FIELDS)


class UserWithScoresAdmin(PlatformUserAdmin):
    """A person's page lists their scores above their requests and security events. Importing
    apps.compliance.admin above registered PlatformUserAdmin first, whatever the order of INSTALLED_APPS."""

    inlines = [ScoreInline, *PlatformUserAdmin.inlines]


admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), UserWithScoresAdmin)
