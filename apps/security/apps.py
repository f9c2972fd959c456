from __future__ import annotations

from django.apps import AppConfig


class SecurityConfig(AppConfig):
    name = "apps.security"
    label = "security"
    verbose_name = "Security"

    def ready(self) -> None:
        from apps.core.metrics import series_initialise
        from apps.security import client_metadata, signals  # noqa: F401 - connect their receivers
        from apps.security.groups import GROUPS
        from apps.security.models import SecurityEvent
        from apps.security.monitoring import process_metrics_start

        series_initialise(groups=GROUPS, event_kinds=SecurityEvent.Kind.values)
        process_metrics_start()

        from django.db.models.signals import post_migrate

        from apps.security.roles import roles_ensure

        # After every app's migrations (sender unset): each app's permissions exist by the last signal.
        post_migrate.connect(roles_ensure, dispatch_uid="security-roles")
