from __future__ import annotations

from django.contrib.admin.apps import AdminConfig


class PlatformAdminConfig(AdminConfig):
    """Django's admin, whose default site (the one every app registers on) is the platform's."""

    default_site = "music21_platform.admin.PlatformAdminSite"
