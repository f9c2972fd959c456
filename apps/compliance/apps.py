from __future__ import annotations

from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "apps.compliance"
    label = "compliance"
    verbose_name = "Compliance"

    def ready(self) -> None:
        _register_model_history()


def _register_model_history() -> None:
    """django-auditlog keeps the change history of what administrators manage (secrets and password hashes
    excluded)."""
    from auditlog.registry import auditlog
    from django.contrib.auth import get_user_model
    from oauth2_provider.models import Application

    from apps.compliance.models import DataSubjectRequest, RetentionPolicy
    from apps.security.models import Block, ClientPolicy

    auditlog.register(get_user_model(), exclude_fields=["password", "last_login"])
    auditlog.register(Application, exclude_fields=["client_secret"])
    auditlog.register(ClientPolicy)
    auditlog.register(Block)
    auditlog.register(RetentionPolicy)
    auditlog.register(DataSubjectRequest, exclude_fields=["subject", "subject_pseudonym"])
