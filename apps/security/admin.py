"""Admin for client policies; django-oauth-toolkit registers its own clients, tokens and grants."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.html import format_html
from oauth2_provider.admin import ApplicationAdmin
from oauth2_provider.forms import ApplicationForm
from oauth2_provider.models import AccessToken, Application

from apps.compliance.admin import ClientNamesChangeList, client_cell
from apps.compliance.display import json_pretty
from apps.compliance.models import AuditEvent
from apps.security.events import block_lift
from apps.security.models import Block, ClientPolicy, SecurityEvent
from apps.security.services import client_disable, client_enable, client_secret_rotate, token_revoke_all
from apps.security.validators import uri_character_problem


class ClientPolicyInline(admin.StackedInline):
    model = ClientPolicy
    can_delete = False
    fields = ("disabled", "disabled_reason", "may_introspect", "registration_ip", "created_at")
    readonly_fields = ("registration_ip", "created_at")
    extra = 0


class TokenInline(admin.TabularInline):
    """The client's live tokens (never their values) on its page."""

    model = AccessToken
    fk_name = "application"
    fields = ("user", "scope", "created", "expires")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    verbose_name_plural = "access tokens (revoke them with the action on the client list)"

    def get_queryset(self, request: Any) -> Any:
        return super().get_queryset(request).select_related("user").order_by("-created")

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False


class PlatformApplicationForm(ApplicationForm):
    """django-oauth-toolkit's client form. Its redirect URIs are separated by whitespace; each must hold only what
    RFC 3986 allows unencoded (the toolkit's own check lets control characters through)."""

    def clean_redirect_uris(self) -> str:
        value = self.cleaned_data["redirect_uris"]
        problems = [problem for uri in value.split() if (problem := uri_character_problem(uri))]
        if problems:
            raise ValidationError(problems)
        return value


class PlatformApplicationAdmin(ApplicationAdmin):
    form = PlatformApplicationForm
    inlines = [ClientPolicyInline, TokenInline]
    readonly_fields = (*ApplicationAdmin.readonly_fields, "last_used")
    # The toolkit's Application.get_absolute_url names a management page this server does not offer.
    view_on_site = False
    # Few, short columns: the list reads at 1280 px; the client id shows on hover, the rest on the client's page.
    list_display = ("name_cell", "kind", "registration_source", "status", "introspects", "created")
    list_filter = (
        "client_type",
        "authorization_grant_type",
        "registration_source",
        "policy__disabled",
        "policy__may_introspect",
    )
    search_fields = ("name", "client_id")
    list_select_related = ("policy", "user")
    actions = ["disable_clients", "enable_clients", "revoke_client_tokens", "rotate_secrets"]

    @admin.display(description="last used")
    def last_used(self, application: Application) -> str:
        last = AuditEvent.objects.filter(client_id=application.client_id).order_by("-id").only("created_at").first()
        return f"{last.created_at:%Y-%m-%d %H:%M:%S} UTC" if last else "never"

    @admin.display(description="name", ordering="name")
    def name_cell(self, application: Application) -> str:
        return format_html('<span title="client id {}">{}</span>', application.client_id, application.name or "-")

    @admin.display(description="kind", ordering="client_type")
    def kind(self, application: Application) -> str:
        return f"{application.get_client_type_display()}, {application.get_authorization_grant_type_display()}"

    @admin.display(description="status", ordering="policy__disabled")
    def status(self, application: Application) -> str:
        policy = getattr(application, "policy", None)
        state = "disabled" if policy is not None and policy.disabled else "enabled"
        return format_html('<span class="status status-{}">{}</span>', state, state)

    @admin.display(description="introspects", boolean=True)
    def introspects(self, application: Application) -> bool:
        policy = getattr(application, "policy", None)
        return policy is not None and policy.may_introspect

    def has_client_status_permission(self, request: Any) -> bool:
        """Disabling, enabling and revoking a client's tokens change its status (its policy), which the security
        officer may do without the right to change the client itself: rotating a secret needs that right."""
        return request.user.has_perm("security.change_clientpolicy")

    @admin.action(description="Disable the selected clients (and revoke their tokens)", permissions=["client_status"])
    def disable_clients(self, request: Any, queryset: Any) -> None:
        for application in queryset:
            client_disable(application=application, reason=f"disabled by {request.user.get_username()}")
        messages.success(request, f"Disabled {queryset.count()} client(s); their tokens were revoked.")

    @admin.action(description="Enable the selected clients", permissions=["client_status"])
    def enable_clients(self, request: Any, queryset: Any) -> None:
        for application in queryset:
            client_enable(application=application)
        messages.success(request, f"Enabled {queryset.count()} client(s).")

    @admin.action(description="Revoke every token of the selected clients", permissions=["client_status"])
    def revoke_client_tokens(self, request: Any, queryset: Any) -> None:
        revoked = sum(token_revoke_all(application=application) for application in queryset)
        messages.success(request, f"Revoked {revoked} token(s).")

    @admin.action(
        description="Rotate the secret of the selected confidential clients (shown once)", permissions=["change"]
    )
    def rotate_secrets(self, request: Any, queryset: Any) -> None:
        for application in queryset:
            if application.client_type != Application.CLIENT_CONFIDENTIAL:
                messages.error(request, f"{application.name}: a public client has no secret.")
                continue
            secret = client_secret_rotate(application=application)
            messages.warning(
                request, f"New secret of {application.name} ({application.client_id}), shown only now: {secret}"
            )


admin.site.unregister(Application)
admin.site.register(Application, PlatformApplicationAdmin)


@admin.register(SecurityEvent)
class SecurityEventAdmin(admin.ModelAdmin):
    """Read-only: security events are evidence."""

    list_display = ("created_at", "kind", "severity", "user", "client", "ip")
    list_filter = ("kind", "severity", "created_at")
    search_fields = ("client_id", "ip", "user__username")
    list_select_related = ("user",)
    date_hierarchy = "created_at"
    fields = ("created_at", "kind", "severity", "user", "client", "ip", "detail_pretty")
    readonly_fields = fields

    def get_changelist(self, request: Any, **kwargs: Any) -> Any:
        return ClientNamesChangeList

    @admin.display(description="client", ordering="client_id")
    def client(self, event: SecurityEvent) -> str:
        if not hasattr(event, "client_name"):  # the change page: one event, one query
            application = Application.objects.filter(client_id=event.client_id).only("pk", "name").first()
            event.client_name = application.name if application else None
            event.client_url = (
                reverse("admin:oauth2_provider_application_change", args=[application.pk]) if application else None
            )
        return client_cell(event)

    @admin.display(description="detail")
    def detail_pretty(self, event: SecurityEvent) -> str:
        return json_pretty(event.detail)

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(Block)
class BlockAdmin(admin.ModelAdmin):
    list_display = ("target", "value", "reason", "until", "lifted", "created_at")
    list_filter = ("target", "lifted")
    search_fields = ("value",)
    readonly_fields = ("target", "value", "reason", "until", "created_at")
    actions = ["lift_blocks"]

    def has_add_permission(self, request: Any) -> bool:
        return False

    @admin.action(description="Lift the selected blocks now", permissions=["change"])
    def lift_blocks(self, request: Any, queryset: Any) -> None:
        for block in queryset:
            block_lift(block=block)
        messages.success(request, f"Lifted {queryset.count()} block(s).")
