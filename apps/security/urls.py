from __future__ import annotations

from csp.decorators import csp_replace
from django.contrib.auth import views as auth_views
from django.urls import include, path

from apps.security import registration_views, staff_otp, token_views, views
from apps.security.sign_in import sign_in_paused_when_blocked

# Chromium applies form-action to every redirect that follows a form's submission: the consent form's answer, and
# the sign-in form's when the application was approved before, redirect to the client's redirect URI, on its own
# origin (a loopback port, claude.ai, a custom scheme). These two pages go without form-action; every other page
# keeps form-action 'self' (settings.CONTENT_SECURITY_POLICY).
_forms_answer_to_clients = csp_replace({"form-action": None})

# The OAuth endpoints under /o/: django-oauth-toolkit's views, with the platform's rules where it has them. Device
# flow and the application-management pages are not offered (the admin manages clients).
oauth_patterns = (
    [
        path("authorize/", _forms_answer_to_clients(views.AuthorizationView.as_view()), name="authorize"),
        path("token/", token_views.TokenView.as_view(), name="token"),
        path("revoke_token/", token_views.RevokeTokenView.as_view(), name="revoke-token"),
        path("introspect/", token_views.IntrospectTokenView.as_view(), name="introspect"),
        path("register/", registration_views.ClientRegistrationView.as_view(), name="dcr-register"),
        path(
            "register/<str:client_id>/",
            registration_views.ClientManagementView.as_view(),
            name="dcr-register-management",
        ),
    ],
    "oauth2_provider",
)

urlpatterns = [
    path("o/", include(oauth_patterns)),
    # The discovery documents (RFC 8414, RFC 9728) where django-oauth-toolkit's metadata_urlpatterns put them,
    # readable from any origin; the authorization server's in the platform's version (apps.security.views).
    path(".well-known/oauth-authorization-server", views.ServerMetadataView.as_view(), name="oauth-server-metadata"),
    path(
        ".well-known/oauth-authorization-server/<path:issuer_path>",
        views.ServerMetadataView.as_view(),
        name="oauth-server-metadata-issuer",
    ),
    path(".well-known/oauth-protected-resource", views.ResourceMetadataView.as_view(), name="oauth-resource-metadata"),
    path(
        ".well-known/oauth-protected-resource/<path:resource_path>",
        views.ResourceMetadataView.as_view(),
        name="oauth-resource-metadata-path",
    ),
    path(
        "accounts/login/",
        _forms_answer_to_clients(sign_in_paused_when_blocked(views.LoginView.as_view())),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/second-factor/", staff_otp.second_factor, name="staff-second-factor"),
    path("accounts/second-factor/enrol/", staff_otp.second_factor_enrol, name="staff-second-factor-enrol"),
    path("accounts/second-factor/recovery-codes/", staff_otp.recovery_codes, name="staff-recovery-codes"),
]
