"""What the platform adds to django-oauth-toolkit's clients and codes."""

from __future__ import annotations

from django.db import models
from oauth2_provider.models import Application


class ClientPolicy(models.Model):
    """An OAuth client's standing on this platform: an administrator can disable it, and registrations remember
    where they came from."""

    application = models.OneToOneField(Application, on_delete=models.CASCADE, related_name="policy")
    disabled = models.BooleanField(
        default=False,
        help_text="A disabled client cannot authorize or get tokens, and its existing tokens stop working.",
    )
    disabled_reason = models.CharField(max_length=200, blank=True)
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
