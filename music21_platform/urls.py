from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from apps.security.admin_views import breakers_view
from apps.security.sign_in import sign_in_paused_when_blocked
from apps.tools import views as tool_views
from music21_platform import views

urlpatterns = [
    path("", views.landing, name="landing"),
    path("docs/tools", views.tools_reference, name="docs-tools"),
    path("admin/security/breakers/", admin.site.admin_view(breakers_view), name="admin-breakers"),
    # The admin's sign-in, refused to a blocked address as the site's is (apps.security.sign_in).
    path("admin/login/", sign_in_paused_when_blocked(admin.site.login)),
    path("admin/", admin.site.urls),
    path("health", tool_views.health, name="health"),
    path("health/ready", tool_views.ready, name="ready"),
    path("metrics", tool_views.metrics_view, name="metrics"),
    path("server_stats", tool_views.ServerStatsView.as_view(), name="server-stats"),
    path("", include("apps.security.urls")),
    path("", include("apps.compliance.urls")),
]
