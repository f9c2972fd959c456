"""Security events: record them, count them, and block an address or client that produces too many.

Recording never fails a call: if the database cannot take the event, it is logged instead.
"""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from apps.compliance.audit import audit_record
from apps.security import metrics
from apps.security.models import Block, SecurityEvent
from apps.tools.errors import Blocked

logger = logging.getLogger("apps.security.events")

# Events that count toward a block: what an attacker produces, not what an honest client stumbles into.
COUNTED = {
    SecurityEvent.Kind.AUTH_FAILURE,
    SecurityEvent.Kind.LOGIN_FAILURE,
    SecurityEvent.Kind.SCOPE_VIOLATION,
    SecurityEvent.Kind.CROSS_TENANT,
    SecurityEvent.Kind.HOSTILE_INPUT,
    SecurityEvent.Kind.RATE_LIMIT,
}


def security_event_record(
    *,
    kind: str,
    severity: str = SecurityEvent.Severity.WARNING,
    user: Any = None,
    client_id: str | None = None,
    ip: str | None = None,
    **detail: Any,
) -> None:
    """Store one security event, count it, and block its source if it crossed the threshold."""
    label = detail.get("input_kind", kind) if kind == SecurityEvent.Kind.HOSTILE_INPUT else kind
    metrics.SECURITY_VIOLATIONS.labels(kind=label).inc()
    try:
        SecurityEvent.objects.create(
            kind=kind,
            severity=severity,
            user=user if getattr(user, "pk", None) else None,
            client_id=client_id or "",
            ip=ip or None,
            detail=detail,
        )
    except Exception:  # the event must not turn a refusal into a crash
        logger.exception("could not store security event %s (%s)", kind, detail)
    else:
        logger.warning(
            "security event %s user=%s client=%s ip=%s %s", kind, getattr(user, "pk", None), client_id, ip, detail
        )
    if kind in COUNTED:
        for target, value in ((Block.Target.IP, ip), (Block.Target.CLIENT, client_id)):
            if value:
                _count_toward_block(target, value)


def _count_toward_block(target: str, value: str) -> None:
    window = settings.SECURITY_BLOCK_WINDOW
    key = f"{settings.GUARD_NAMESPACE}:violations:{target}:{value}:{int(time.time() // window)}"
    try:
        cache.add(key, 0, window)
        count = cache.incr(key)
    except Exception:  # the cache is down: no block decision, the events are still stored
        logger.exception("could not count a security event toward a block")
        return
    if count == settings.SECURITY_BLOCK_THRESHOLD:
        until = timezone.now() + timedelta(seconds=settings.LOCKOUT_DURATION)
        Block.objects.create(
            target=target,
            value=value,
            reason=f"{count} security events within {window} s",
            until=until,
        )
        cache.delete(_block_key(target, value))
        metrics.SECURITY_VIOLATIONS.labels(kind="blocked").inc()
        audit_record(action="security.blocked", outcome="blocked", target=f"{target}:{value}"[:300])
        SecurityEvent.objects.create(
            kind=SecurityEvent.Kind.BLOCKED,
            severity=SecurityEvent.Severity.HIGH,
            client_id=value if target == Block.Target.CLIENT else "",
            ip=value if target == Block.Target.IP else None,
            detail={"target": target, "until": until.isoformat(), "events": count},
        )


def _blocked_until(targets: list[tuple[str, str]]) -> dict[tuple[str, str], float]:
    """Unix time until which each (target, value) is blocked (0 if not), cached briefly so that the check costs
    one cache read and no query."""
    keys = {pair: _block_key(*pair) for pair in targets}
    try:
        cached = cache.get_many(list(keys.values()))
    except Exception:  # the cache is down: ask the database
        cached = {}
    until: dict[tuple[str, str], float] = {}
    for pair, key in keys.items():
        if key in cached:
            until[pair] = float(cached[key])
            continue
        try:
            block = (
                Block.objects.filter(target=pair[0], value=pair[1], lifted=False, until__gt=timezone.now())
                .order_by("-until")
                .first()
            )
        except (OperationalError, InterfaceError):
            # With the database down every call fails anyway, with a clear error; the block list is no reason
            # to fail differently.
            until[pair] = 0.0
            continue
        until[pair] = block.until.timestamp() if block else 0.0
        with contextlib.suppress(Exception):
            cache.set(key, until[pair], 10)
    return until


def _block_key(target: str, value: str) -> str:
    return f"{settings.GUARD_NAMESPACE}:blocked:{target}:{value}"


def block_check(*, ip: str | None, client_id: str | None) -> None:
    """Refuse a blocked address or client, saying until when."""
    targets = [(target, value) for target, value in ((Block.Target.IP, ip), (Block.Target.CLIENT, client_id)) if value]
    if not targets:
        return
    for (target, _), until in _blocked_until(targets).items():
        if until > time.time():
            metrics.BLOCKED.labels(reason="blocked").inc()
            when = datetime.fromtimestamp(until, tz=UTC).strftime("%H:%M:%S UTC")
            raise Blocked(
                f"This {dict(Block.Target.choices)[target]} is blocked until {when} after repeated security violations."
            )


def block_lift(*, block: Block) -> None:
    """Lift a block before it expires (an administrator's action)."""
    block.lifted = True
    block.save(update_fields=["lifted"])
    cache.delete(_block_key(block.target, block.value))
    audit_record(action="security.block_lifted", outcome="success", target=f"{block.target}:{block.value}"[:300])
