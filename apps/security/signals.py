"""Sign-in outcomes become metrics and security events; changes that can invalidate a token, or refuse its calls,
bump the token epoch."""

from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from oauth2_provider.models import AccessToken, Application, RefreshToken

from apps.compliance.audit import audit_record
from apps.core import metrics
from apps.security.events import security_event_record
from apps.security.models import Block, ClientPolicy
from apps.security.services import token_epoch_bump


def _ip(request: Any) -> str | None:
    return request.META.get("REMOTE_ADDR") if request is not None else None


@receiver(user_login_failed)
def login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    metrics.AUTH_ATTEMPTS.labels(result="failure").inc()
    security_event_record(kind="login_failure", ip=_ip(request), username=str(credentials.get("username", ""))[:150])
    audit_record(action="auth.login", outcome="failure", ip=_ip(request))


@receiver(user_logged_in)
def logged_in(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    metrics.AUTH_ATTEMPTS.labels(result="success").inc()
    audit_record(action="auth.login", outcome="success", user=user, ip=_ip(request))


@receiver(user_locked_out)
def locked_out(
    sender: Any, request: Any = None, username: str | None = None, ip_address: str | None = None, **kwargs: Any
) -> None:
    metrics.AUTH_ATTEMPTS.labels(result="locked_out").inc()
    security_event_record(
        kind="blocked", severity="high", ip=ip_address, lockout="login", username=(username or "")[:150]
    )
    audit_record(action="auth.lockout", outcome="locked_out", ip=ip_address)


def _connect_token_invalidation() -> None:
    """Whatever can make a token invalid, or refuse its calls (a block), forgets what every process remembers
    under the token epoch (apps.security.services, apps.security.events)."""
    for model in (AccessToken, RefreshToken, Application, ClientPolicy, Block, get_user_model()):
        post_save.connect(token_epoch_bump, sender=model, dispatch_uid=f"token-epoch-save-{model.__name__}")
        post_delete.connect(token_epoch_bump, sender=model, dispatch_uid=f"token-epoch-delete-{model.__name__}")


_connect_token_invalidation()
