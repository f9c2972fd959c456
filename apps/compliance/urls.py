from __future__ import annotations

from django.urls import path

from apps.compliance import admin_views, api, views

urlpatterns = [
    path("privacy/", views.privacy_home, name="privacy"),
    path("privacy/export", views.privacy_export, name="privacy-export"),
    path("privacy/applications/<int:pk>/revoke", views.privacy_revoke, name="privacy-revoke"),
    path("privacy/erasure", views.privacy_erasure, name="privacy-erasure"),
    path("privacy/requests/<int:pk>/cancel", views.privacy_cancel, name="privacy-cancel"),
    path("privacy/requests/<int:pk>/download", views.privacy_download, name="privacy-download"),
    path("privacy/api/inventory", api.InventoryView.as_view(), name="privacy-api-inventory"),
    path("privacy/api/requests/", api.RequestListView.as_view(), name="privacy-api-requests"),
    path("privacy/api/requests/<int:pk>", api.RequestDetailView.as_view(), name="privacy-api-request"),
    path("privacy/api/requests/<int:pk>/cancel", api.RequestCancelView.as_view(), name="privacy-api-cancel"),
    path("privacy/api/requests/<int:pk>/download", api.RequestDownloadView.as_view(), name="privacy-api-download"),
    path("compliance/report", api.ReportView.as_view(), name="compliance-report"),
    path("compliance/report/view", admin_views.report_page, name="compliance-report-page"),
]
