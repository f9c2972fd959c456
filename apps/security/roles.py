"""Staff roles: groups kept in step with the code after every migration (and test-database flush).

- compliance officer: handles data-subject requests, reads the audit trail and model history, edits retention;
  cannot touch OAuth clients or security settings.
- security officer: reads security events, lifts blocks, sees and resets circuit breakers, disables clients.
Superusers see everything.
"""

from __future__ import annotations

from typing import Any

ROLES: dict[str, list[str]] = {
    "compliance officer": [
        "compliance.view_datasubjectrequest",
        "compliance.change_datasubjectrequest",
        "compliance.view_auditevent",
        "compliance.view_retentionpolicy",
        "compliance.change_retentionpolicy",
        "compliance.view_retentionrun",
        "auditlog.view_logentry",
    ],
    "security officer": [
        "security.view_securityevent",
        "security.view_block",
        "security.change_block",
        "security.manage_circuit_breakers",
        "oauth2_provider.view_application",
        "security.view_clientpolicy",
        "security.change_clientpolicy",
        "compliance.view_auditevent",
    ],
}


def roles_ensure(**kwargs: Any) -> None:
    """Create the role groups and give each exactly its permissions (post_migrate receiver)."""
    from django.contrib.auth.models import Group, Permission

    for name, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        permissions = []
        for dotted in codenames:
            app_label, codename = dotted.split(".")
            permission = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
            if permission is not None:  # created by its app's own post_migrate, which may come later: re-run then
                permissions.append(permission)
        group.permissions.set(permissions)
