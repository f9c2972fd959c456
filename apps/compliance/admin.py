"""Admin for the audit trail (read-only), retention, and data-subject requests. Actions call services."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html

from apps.compliance import audit, services, tasks
from apps.compliance.models import AuditEvent, DataSubjectRequest, RetentionPolicy, RetentionRun, SubjectKey
from apps.compliance.retention import retention_apply
from apps.core.errors import ApplicationError
from apps.security.models import SecurityEvent
from apps.security.services import token_revoke_all


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


_audited_elsewhere: list[Callable[[], Iterable[str]]] = []


def audit_actions_register(actions: Callable[[], Iterable[str]]) -> None:
    """An app above compliance names the actions it audits, for the audit list's action filter (the tools: one
    per tool). A callable, read each time the filter is shown: the admin is imported before the apps' ready()
    fill their registries."""
    _audited_elsewhere.append(actions)


class ActionFilter(admin.SimpleListFilter):
    """The actions the apps registered (audit_actions_register) and those of the audited services, not a DISTINCT
    over the whole table."""

    title = "action"
    parameter_name = "action"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        registered = [action for actions in _audited_elsewhere for action in actions()]
        others = [
            "auth.login", "auth.lockout",
            "oauth.client_registered", "oauth.client_read", "oauth.client_updated", "oauth.client_deleted",
            "oauth.client_disabled", "oauth.client_enabled", "oauth.client_secret_rotated",
            "breaker.state", "privacy.export", "privacy.erasure", "retention.run", "security.blocked",
        ]  # fmt: skip
        return [(action, action) for action in (*registered, *others)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(action=self.value()) if self.value() else queryset


class OutcomeFilter(admin.SimpleListFilter):
    title = "outcome"
    parameter_name = "outcome"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        codes = ["success", "not_found", "invalid_arguments", "insufficient_scope", "rate_limited", "busy",
                 "circuit_open", "timeout", "unprocessable_score", "internal_error", "unavailable", "failure",
                 "completed"]  # fmt: skip
        return [(code, code) for code in codes]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(outcome=self.value()) if self.value() else queryset


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "action", "outcome", "actor", "client_id", "target", "duration", "seq")
    # Fixed choices only: a filter that lists distinct values scans the table on every page.
    list_filter = (ActionFilter, OutcomeFilter, ("created_at", admin.DateFieldListFilter))
    # Exact matches on indexed columns: a pseudonym, a client id, a request id, a target ("score:chorale").
    search_fields = ("=actor", "=client_id", "=request_id", "=target")
    search_help_text = "An exact pseudonym, client id, request id or target such as score:chorale."
    paginator = CappedPaginator
    show_full_result_count = False
    list_per_page = 100
    readonly_fields = ("ip_address",)
    exclude = ("ip",)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        # Case-sensitive equality, so that each column's index serves the search (the admin's "=" means iexact,
        # which no plain index can answer).
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(Q(actor=term) | Q(client_id=term) | Q(request_id=term) | Q(target=term)), False

    @admin.display(description="duration")
    def duration(self, event: AuditEvent) -> str:
        return f"{event.duration_ms:.1f} ms" if event.duration_ms is not None else ""

    @admin.display(description="IP address")
    def ip_address(self, event: AuditEvent) -> str:
        return audit.ip_reveal(event) or "(not readable: no address, or its person was erased)"


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(admin.ModelAdmin):
    list_display = ("category", "days", "enabled", "updated_at")
    list_editable = ("days", "enabled")
    actions = ["preview"]

    @admin.action(description="Dry run: count what every policy would remove now")
    def preview(self, request: HttpRequest, queryset: QuerySet) -> None:
        run = retention_apply(dry_run=True)
        summary = ", ".join(f"{k}: {v}" for k, v in sorted(run.removed.items())) or "nothing"
        self.message_user(request, f"A run now would remove {summary}.")


@admin.register(RetentionRun)
class RetentionRunAdmin(ReadOnlyAdmin):
    list_display = ("started_at", "dry_run", "total_removed", "removed", "duration_ms")
    list_filter = ("dry_run",)

    @admin.display(description="rows removed")
    def total_removed(self, run: RetentionRun) -> int:
        return run.total


@admin.register(DataSubjectRequest)
class DataSubjectRequestAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "subject", "status", "requested_at", "due", "scheduled_for", "handled_by", "export")
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
        "via",
        "export",
    )
    actions = ["approve", "run_now", "cancel"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # requests are filed by their subject, or from the user's page (start an export or erasure)

    @admin.display(description="due", ordering="due_at")
    def due(self, obj: DataSubjectRequest) -> str:
        if obj.is_overdue:
            return format_html('<strong class="overdue" style="color:#ba2121">overdue since {}</strong>', obj.due_at)
        return obj.due_at.strftime("%Y-%m-%d")

    @admin.display(description="export")
    def export(self, obj: DataSubjectRequest) -> str:
        archive = getattr(obj, "archive", None)
        if archive is None or archive.expires_at <= timezone.now():
            return ""
        url = reverse("privacy-api-download", args=[obj.pk])
        return format_html('<a href="{}">download ({} KB)</a>', url, max(1, archive.size // 1024))

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

    @admin.action(description="Approve (erasures run after the grace period)")
    def approve(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, "approved", lambda r: _approve(r, by=request.user, run_now=False))

    @admin.action(description="Run now (skip the grace period)")
    def run_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, "started", lambda r: _approve(r, by=request.user, run_now=True))

    @admin.action(description="Cancel")
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

    @admin.action(description="Revoke every token of the selected users")
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet) -> None:
        revoked = sum(token_revoke_all(user=person) for person in queryset)
        self.message_user(request, f"Revoked {revoked} token(s); the applications must ask the users again.")

    @admin.action(description="Start an export of their data (awaits approval)")
    def start_export(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._start(request, queryset, DataSubjectRequest.Kind.EXPORT)

    @admin.action(description="Start an erasure of their data (awaits approval)")
    def start_erasure(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._start(request, queryset, DataSubjectRequest.Kind.ERASURE)


admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), PlatformUserAdmin)
