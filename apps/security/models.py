"""What the platform adds to django-oauth-toolkit's clients and codes."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from oauth2_provider.models import Application


class ClientPolicy(models.Model):
    """An OAuth client's standing on this platform: an administrator can disable it, or trust it as a resource
    server that may introspect tokens, and registrations remember where they came from."""

    application = models.OneToOneField(Application, on_delete=models.CASCADE, related_name="policy")
    disabled = models.BooleanField(
        default=False,
        help_text="A disabled client cannot authorize or get tokens, and its existing tokens stop working.",
    )
    disabled_reason = models.CharField(max_length=200, blank=True)
    may_introspect = models.BooleanField(
        "may introspect tokens",
        default=False,
        help_text=(
            "Trust this client as a resource server: it may ask /o/introspect/ about any token (whose it is, "
            "what it may do). Leave it off for clients that registered themselves."
        ),
    )
    registration_ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "client policy"
        verbose_name_plural = "client policies"

    def __str__(self) -> str:
        return f"{self.application} ({'disabled' if self.disabled else 'enabled'})"


class ConsumedAuthorizationCode(models.Model):
    """An authorization code already exchanged, kept (as a hash) until it would have expired anyway, so that a
    second use can be recognised and the tokens issued from it revoked (RFC 6749, section 4.1.2)."""

    code_sha256 = models.CharField(max_length=64, unique=True)
    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="+")
    access_token_checksum = models.CharField(max_length=64, blank=True)
    consumed_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"code {self.code_sha256[:8]}… of {self.application_id}"


class SecurityEvent(models.Model):
    """Something security-relevant happened: a refused token, a scope violation, hostile input, a block."""

    class Kind(models.TextChoices):
        AUTH_FAILURE = "auth_failure", "authentication failure"
        LOGIN_FAILURE = "login_failure", "failed login"
        SCOPE_VIOLATION = "scope_violation", "missing scope"
        CROSS_TENANT = "cross_tenant", "another user's score"
        RATE_LIMIT = "rate_limit", "rate limit hit"
        HOSTILE_INPUT = "hostile_input", "hostile input"
        BLOCKED = "blocked", "address or client blocked"

    class Severity(models.TextChoices):
        INFO = "info"
        WARNING = "warning"
        HIGH = "high"

    kind = models.CharField(max_length=32, choices=Kind.choices, db_index=True)
    severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.WARNING)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    client_id = models.CharField(max_length=100, blank=True, db_index=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["ip", "created_at"]), models.Index(fields=["kind", "created_at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.severity}) at {self.created_at:%Y-%m-%d %H:%M:%S}"


class Block(models.Model):
    """A user, address or client refused until `until`: a user or an address after too many security events of
    its own in a window (see apps.security.events), a client when an administrator decides it."""

    class Target(models.TextChoices):
        USER = "user", "user"
        IP = "ip", "IP address"
        CLIENT = "client", "OAuth client"

    target = models.CharField(max_length=8, choices=Target.choices)
    value = models.CharField(max_length=100)
    reason = models.CharField(max_length=200)
    until = models.DateTimeField(db_index=True)
    lifted = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["target", "value", "until"])]
        permissions = [("manage_circuit_breakers", "Can see and reset circuit breakers")]

    def __str__(self) -> str:
        return f"{self.get_target_display()} {self.value} until {self.until:%Y-%m-%d %H:%M}"
