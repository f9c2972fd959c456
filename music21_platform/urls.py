from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path

from apps.compliance.dashboard import dashboard_context
from apps.security.admin_views import breakers_view
from apps.tools import views as tool_views

admin.site.site_header = "music21 platform"
admin.site.site_title = "music21 platform admin"
admin.site.index_title = "Administration"

# The admin index is the dashboard. The default site is kept (every package registers on it); only its index view
# gets the dashboard's context.
_admin_index = admin.site.index


def _dashboard_index(request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
    return _admin_index(request, {**dashboard_context(request.user), **(extra_context or {})})


admin.site.index = _dashboard_index  # type: ignore[method-assign]

urlpatterns = [
    path("admin/security/breakers/", admin.site.admin_view(breakers_view), name="admin-breakers"),
    path("admin/", admin.site.urls),
    path("health", tool_views.health, name="health"),
    path("health/ready", tool_views.ready, name="ready"),
    path("metrics", tool_views.metrics_view, name="metrics"),
    path("server_stats", tool_views.ServerStatsView.as_view(), name="server-stats"),
    path("", include("apps.security.urls")),
    path("", include("apps.compliance.urls")),
]
