"""Admin for the audit trail (read-only), retention, and data-subject requests. Actions call services."""

from __future__ import annotations

import re
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe
from oauth2_provider.models import Application

from apps.compliance import (
    admin_schedules,  # noqa: F401 - registers the periodic tasks' admin, with the checks django-celery-beat's lacks
    audit,
    services,
    tasks,
)
from apps.compliance.api import export_response
from apps.compliance.display import (
    audited_actions,
    counts_humane,
    duration_humane,
    json_pretty,
)
from apps.compliance.models import AuditEvent, DataSubjectRequest, RetentionPolicy, RetentionRun, SubjectKey
from apps.compliance.retention import retention_apply
from apps.compliance.services.export import administrator_access_to
from apps.core.errors import ApplicationError
from apps.security.models import SecurityEvent
from apps.security.selectors import clients_named
from apps.security.services import token_revoke_all


class ClientNamesChangeList(ChangeList):
    """Looks up the names of the OAuth clients on the page in one query (no query per row) and hands each row its
    client's name and admin page as `client_name` / `client_url`."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        rows = list(self.result_list)  # evaluated once: the rendering iterates the same cached rows
        found = clients_named(row.client_id for row in rows)
        for row in rows:
            name, pk = found.get(row.client_id, (None, None))
            row.client_name = name
            row.client_url = reverse("admin:oauth2_provider_application_change", args=[pk]) if pk else None


def breakable(text: str) -> str:
    """`text` escaped, with a line-break opportunity after each ".", ":", "_" and "/" (identifiers in narrow cells)."""
    return mark_safe(re.sub(r"([.:_/])", r"\1<wbr>", escape(text)))  # noqa: S308 - escaped first


def client_cell(row: Any) -> str:
    """The client's name linked to its page (its id on hover); the raw id only for a client that no longer exists."""
    if not row.client_id:
        return ""
    name = getattr(row, "client_name", None)
    if name is None:
        return format_html('<span class="client-id" title="{}">{}…</span>', row.client_id, row.client_id[:10])
    return format_html('<a href="{}" title="{}">{}</a>', row.client_url, row.client_id, name or row.client_id[:10])


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class CappedPaginator(Paginator):
    """Counts at most CAP rows (a LIMIT inside the COUNT): with a million events, an exact count on every page is
    what makes such lists slow. Past the cap, narrow the list with a filter or a search."""

    CAP = 100_000

    @cached_property
    def count(self) -> int:
        return self.object_list[: self.CAP].count()


class ActionFilter(admin.SimpleListFilter):
    """The actions the apps registered (audit_actions_register) and those of the audited services, not a DISTINCT
    over the whole table."""

    title = "action"
    parameter_name = "action"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        registered = audited_actions()
        others = [
            "auth.login", "auth.lockout",
            "oauth.client_registered", "oauth.client_read", "oauth.client_updated", "oauth.client_deleted",
            "oauth.client_disabled", "oauth.client_enabled", "oauth.client_secret_rotated", "oauth.application_revoked",
            "breaker.state", "breaker.reset", "privacy.export", "privacy.erasure", "privacy.export_requested",
            "privacy.erasure_requested", "privacy.export_approved", "privacy.erasure_approved",
            "privacy.export_cancelled", "privacy.erasure_cancelled", "privacy.export_downloaded", "retention.run",
            "retention.dry_run",
            "security.blocked", "security.block_lifted",
        ]  # fmt: skip
        return [(action, action) for action in (*registered, *others)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(action=self.value()) if self.value() else queryset


class OutcomeFilter(admin.SimpleListFilter):
    title = "outcome"
    parameter_name = "outcome"

    # What the services record besides the error family's codes (a request's status, a breaker's state...).
    RECORDED = ("success", "failure", "refused", "completed", "pending", "scheduled", "cancelled", "failed",
                "locked_out", "blocked", "open", "closed", "half-open", "error")  # fmt: skip

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        # Every outcome an event can carry: a tool call ends with "success" or its error's code, the other
        # events with one of RECORDED. A DISTINCT over the table would scan it on every page.
        codes = dict.fromkeys((*self.RECORDED, *sorted(_error_codes(ApplicationError))))
        return [(code, code) for code in codes]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(outcome=self.value()) if self.value() else queryset


def _error_codes(family: type[ApplicationError]) -> set[str]:
    return {family.code} | {code for each in family.__subclasses__() for code in _error_codes(each)}


class NotSuccessFilter(admin.SimpleListFilter):
    """Every outcome but success, as the dashboard counts "not successful"."""

    title = "result"
    parameter_name = "result"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("failed", "not successful")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.exclude(outcome="success") if self.value() == "failed" else queryset


class ToolCallsFilter(admin.SimpleListFilter):
    """Only tool calls (every tool.* action), as the dashboard counts them."""

    title = "kind"
    parameter_name = "kind"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("tool", "tool calls"), ("admin", "administrators' access to a person's data")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "tool":
            return queryset.filter(action__startswith="tool.")
        if self.value() == "admin":
            return queryset.filter(action__startswith="admin.")
        return queryset


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    # The chain position (seq) and the request id are on an event's page: the list keeps what a reader scans.
    list_display = ("when", "action_cell", "outcome", "actor_short", "client", "target_cell", "duration")
    # Fixed choices only: a filter that lists distinct values scans the table on every page.
    list_filter = (
        ActionFilter,
        OutcomeFilter,
        ToolCallsFilter,
        NotSuccessFilter,
        ("created_at", admin.DateFieldListFilter),
    )
    search_fields = ("=actor", "=client_id", "=request_id", "=target")
    search_help_text = (
        "An exact username or pseudonym (a username is looked up as its pseudonym), OAuth client name or client id, "
        "request id, or target such as score:chorale."
    )
    paginator = CappedPaginator
    show_full_result_count = False
    list_per_page = 100
    readonly_fields = ("ip_address", "detail_pretty")
    exclude = ("ip", "detail")

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return ClientNamesChangeList

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        # Case-sensitive equality, so that each column's index serves the search (the admin's "=" means iexact,
        # which no plain index can answer). The trail never stores a username or a client's name: both are
        # resolved here to what it stores (the person's pseudonym, the client's id).
        term = search_term.strip()
        if not term:
            return queryset, False
        pseudonyms = [
            *SubjectKey.objects.filter(user__username__iexact=term).values_list("pseudonym", flat=True),
            term,
        ]
        client_ids = Application.objects.filter(name__iexact=term).values_list("client_id", flat=True)
        return queryset.filter(
            Q(actor__in=pseudonyms)
            | Q(client_id=term)
            | Q(request_id=term)
            | Q(target=term)
            | Q(client_id__in=list(client_ids))
            | administrator_access_to(pseudonyms)
        ), False

    @admin.display(description="time", ordering="created_at")
    def when(self, event: AuditEvent) -> str:
        return f"{timezone.localtime(event.created_at):%Y-%m-%d %H:%M:%S}"

    @admin.display(description="action", ordering="action")
    def action_cell(self, event: AuditEvent) -> str:
        # A line may break after each dot or underscore (privacy.erasure_requested), never inside a word.
        return breakable(event.action)

    @admin.display(description="actor", ordering="actor")
    def actor_short(self, event: AuditEvent) -> str:
        if not event.actor:
            return ""
        return format_html('<span class="pseudonym" title="{}">{}…</span>', event.actor, event.actor[:8])

    @admin.display(description="client", ordering="client_id")
    def client(self, event: AuditEvent) -> str:
        return client_cell(event)

    @admin.display(description="target", ordering="target")
    def target_cell(self, event: AuditEvent) -> str:
        return format_html('<span class="target" title="{}">{}</span>', event.target, breakable(event.target))

    @admin.display(description="duration", ordering="duration_ms")
    def duration(self, event: AuditEvent) -> str:
        return duration_humane(event.duration_ms)

    @admin.display(description="detail")
    def detail_pretty(self, event: AuditEvent) -> str:
        return json_pretty(event.detail)

    @admin.display(description="IP address")
    def ip_address(self, event: AuditEvent) -> str:
        return audit.ip_reveal(event) or "(not readable: no address, or its person was erased)"


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(admin.ModelAdmin):
    list_display = ("category", "days", "enabled", "updated_at")
    list_editable = ("days", "enabled")
    actions = ["preview"]

    @admin.action(description="Dry run: count what every policy would remove now", permissions=["view"])
    def preview(self, request: HttpRequest, queryset: QuerySet) -> None:
        run = retention_apply(dry_run=True)
        summary = ", ".join(f"{k}: {v}" for k, v in sorted(run.removed.items())) or "nothing"
        self.message_user(request, f"A run now would remove {summary}.")


@admin.register(RetentionRun)
class RetentionRunAdmin(ReadOnlyAdmin):
    list_display = ("started_at", "dry_run", "total_removed", "removed_counts", "duration")
    list_filter = ("dry_run",)
    fields = ("started_at", "dry_run", "duration", "total_removed", "removed_pretty")
    readonly_fields = fields

    @admin.display(description="rows removed")
    def total_removed(self, run: RetentionRun) -> int:
        return run.total

    @admin.display(description="removed, by category")
    def removed_counts(self, run: RetentionRun) -> str:
        return counts_humane(run.removed)

    @admin.display(description="removed, by category")
    def removed_pretty(self, run: RetentionRun) -> str:
        return json_pretty(run.removed)

    @admin.display(description="duration", ordering="duration_ms")
    def duration(self, run: RetentionRun) -> str:
        return duration_humane(run.duration_ms)


@admin.register(DataSubjectRequest)
class DataSubjectRequestAdmin(admin.ModelAdmin):
    # When it is scheduled for is on the request's page: the list keeps what a reader scans.
    list_display = ("id", "kind", "subject", "status", "requested_at", "due", "handled_by", "export")
    list_filter = ("kind", "status", "via")
    search_fields = ("subject__username", "subject__email", "=subject_pseudonym")
    list_select_related = ("subject", "handled_by", "archive")
    readonly_fields = (
        "subject",
        "subject_pseudonym",
        "kind",
        "status",
        "requested_at",
        "due_at",
        "scheduled_for",
        "completed_at",
        "handled_by",
        "filed_by",
        "via",
        "note",
        "export",
    )
    actions = ["approve", "run_now", "cancel"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The export column needs the archive's size and dates, never its content: a ZIP of megabytes per row.
        return super().get_queryset(request).with_archive_dates()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # requests are filed by their subject, or from the user's page (start an export or erasure)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A request is the record that a person's right was asked for and answered (the GDPR report counts them,
        # overdue ones included): one not wanted is cancelled, which keeps it, with who cancelled it.
        return False

    @admin.display(description="due", ordering="due_at")
    def due(self, obj: DataSubjectRequest) -> str:
        if obj.is_overdue:
            return format_html('<strong class="overdue">overdue since {}</strong>', f"{obj.due_at:%Y-%m-%d}")
        return obj.due_at.strftime("%Y-%m-%d")

    @admin.display(description="export")
    def export(self, obj: DataSubjectRequest) -> str:
        archive = getattr(obj, "archive", None)
        if archive is None or archive.expires_at <= timezone.now():
            return ""
        url = reverse("admin:compliance_datasubjectrequest_download", args=[obj.pk])
        return format_html('<a href="{}" class="export-download">ZIP, {} KB</a>', url, max(1, archive.size // 1024))

    def get_urls(self) -> list[Any]:
        download = path(
            "<int:pk>/download/",
            self.admin_site.admin_view(self.download_view),
            name="compliance_datasubjectrequest_download",
        )
        return [download, *super().get_urls()]

    def download_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The export's ZIP for an administrator; the download is audited as theirs (subject_export_download)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        found = get_object_or_404(DataSubjectRequest, pk=pk, kind=DataSubjectRequest.Kind.EXPORT)
        try:
            archive = services.subject_export_download(request=found, by=request.user)
        except ApplicationError as error:
            raise Http404(error.message) from None
        return export_response(archive)

    def _each(self, request: HttpRequest, queryset: QuerySet, verb: str, action: Any) -> None:
        done = 0
        for found in queryset:
            try:
                action(found)
                done += 1
            except ApplicationError as error:
                self.message_user(request, error.message, messages.ERROR)
        if done:
            self.message_user(request, f"{done} request(s) {verb}.")

    # Actions change requests, so they need the change permission: a view-only staff member sees the list only.
    @admin.action(description="Approve (erasures run after the grace period)", permissions=["change"])
    def approve(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, "approved", lambda r: _approve(r, by=request.user, run_now=False))

    @admin.action(description="Run now (skip the grace period)", permissions=["change"])
    def run_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, "started", lambda r: _approve(r, by=request.user, run_now=True))

    @admin.action(description="Cancel", permissions=["change"])
    def cancel(self, request: HttpRequest, queryset: QuerySet) -> None:
        cancel = services.subject_request_cancel
        self._each(request, queryset, "cancelled", lambda r: cancel(request=r, by=request.user))


def _approve(found: DataSubjectRequest, *, by: Any, run_now: bool) -> None:
    services.subject_request_approve(request=found, by=by, run_now=run_now)
    tasks.subject_request_start(found)


# --- Users: what is held about each person, and starting their requests ---------------------------------------------


class ReadOnlyInline(admin.TabularInline):
    """A person's records on their user page. The apps above compliance add theirs (the tools: the person's
    scores) with a subclass of PlatformUserAdmin registered in its place."""

    extra = 0
    can_delete = False
    show_change_link = True
    max_num = 0

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RequestInline(ReadOnlyInline):
    model = DataSubjectRequest
    fk_name = "subject"
    fields = ("kind", "status", "requested_at", "due_at", "completed_at")
    readonly_fields = fields


class SecurityEventInline(ReadOnlyInline):
    model = SecurityEvent
    fields = ("created_at", "kind", "severity", "client_id", "ip")
    readonly_fields = fields


class PlatformUserAdmin(UserAdmin):
    inlines = [RequestInline, SecurityEventInline]
    actions = ["start_export", "start_erasure", "revoke_tokens"]
    fieldsets = (*UserAdmin.fieldsets, ("Activity", {"fields": ("audit_trail",)}))
    readonly_fields = ("audit_trail",)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting an account here would leave its name and e-mail in the model history (its creation and its
        # deletion), its sign-ins, its security events with their addresses, its parsed scores in the processes'
        # memory: an account goes by an erasure (the "Start an erasure" action), which removes all of that.
        return False

    @admin.display(description="audit trail")
    def audit_trail(self, person: Any) -> str:
        """The person's events, found through their pseudonym (the trail never stores who they are)."""
        key = SubjectKey.objects.filter(user=person).first()
        if key is None:
            return "No recorded activity."
        url = reverse("admin:compliance_auditevent_changelist") + f"?q={key.pseudonym}"
        return format_html('<a href="{}" class="audit-trail">Their audit events (pseudonym {})</a>', url, key.pseudonym)

    def _start(self, request: HttpRequest, queryset: QuerySet, kind: str) -> None:
        started = 0
        for person in queryset:
            try:
                filed = services.subject_request_create(subject=person, kind=kind, handled_by=request.user, via="admin")
                tasks.subject_request_start(filed)  # waits for approval: a no-op today, as after every filing
                started += 1
            except ApplicationError as error:
                self.message_user(request, f"{person}: {error.message}", messages.ERROR)
        if started:
            self.message_user(
                request, f"{started} {kind} request(s) filed; approve them under Data-subject requests to run them."
            )

    # A staff member who may only view users may not act on them: each action needs the change permission.
    @admin.action(description="Revoke every token of the selected users", permissions=["change"])
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet) -> None:
        revoked = sum(token_revoke_all(user=person) for person in queryset)
        self.message_user(request, f"Revoked {revoked} token(s); the applications must ask the users again.")

    @admin.action(description="Start an export of their data (awaits approval)", permissions=["change"])
    def start_export(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._start(request, queryset, DataSubjectRequest.Kind.EXPORT)

    @admin.action(description="Start an erasure of their data (awaits approval)", permissions=["change"])
    def start_erasure(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._start(request, queryset, DataSubjectRequest.Kind.ERASURE)


admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), PlatformUserAdmin)
