"""Security events: record them, count them, and block the party that produces too many.

Recording never fails a call: if the database cannot take the event, it is logged instead.

Each event is evidence about one party, and only that party is ever blocked for it:

- a signed-in user's events (a tool call with a valid token) are charged to that user, never to the address it
  came from (behind a NAT or a proxy that address is everyone's) nor to the OAuth client (one client, a Client ID
  Metadata Document's above all, serves many users);
- an unauthenticated party's events are charged to its address: a `client_id` it names proves nothing about who
  sent it, so it is stored with the event and never counted toward blocking that client;
- clients are blocked by administrators (Security -> Blocks), not by counting.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import InterfaceError, OperationalError
from django.db.models import Q
from django.utils import timezone

from apps.compliance.audit import Subject, audit_record, subject_for
from apps.core import metrics
from apps.core.errors import Blocked
from apps.security.models import Block, SecurityEvent
from apps.security.services import epoch_memory, recall, remember, token_epoch

logger = logging.getLogger("apps.security.events")

Kind = SecurityEvent.Kind

# Events that count toward a block: what an attacker produces, not what an honest client stumbles into. A rate-
# limit refusal is not one: an honest burst meets the limit, and the limit already answers it. Nor is a call naming
# a score id that only someone else has (`cross_tenant`): an honest user meets it with an id as common as "score1",
# or their own just deleted, and a prober learns nothing from it (the answer is the same `not_found` as for an id
# nobody has). It is stored for administrators to see.
COUNTED = {Kind.AUTH_FAILURE, Kind.LOGIN_FAILURE, Kind.SCOPE_VIOLATION, Kind.HOSTILE_INPUT}

# Where a refused credential says nothing worth blocking for. A bearer token refused at /mcp is almost always an
# honest client retrying a token that expired or was revoked, and tokens (30 random characters) cannot be guessed
# anyway: counting them blocked the addresses of honest clients and stopped nobody.
UNCOUNTED_AUTH_ENDPOINTS = {"/mcp"}

# Refusals that come in floods (a client retrying into its rate limit, or with its dead token): counted in
# music21_security_violations_total every time, stored as one event per party and kind per block window. A
# refused call stays cheap: no database row per refusal.
SAMPLED = {Kind.RATE_LIMIT}


def security_event_record(
    *,
    kind: str,
    severity: str = SecurityEvent.Severity.WARNING,
    user: Any = None,
    client_id: str | None = None,
    ip: str | None = None,
    **detail: Any,
) -> None:
    """Count one security event; store it (at most once per window for floods, see SAMPLED); and charge it to the
    party it is evidence about (a signed-in user, else the address), blocking that party past the threshold.

    `client_id`: the client the event concerns, stored with it; a signed-in caller's client or, for an
    unauthenticated request, the client it named. Never counted toward a block."""
    label = detail.get("input_kind", kind) if kind == Kind.HOSTILE_INPUT else kind
    metrics.SECURITY_VIOLATIONS.labels(kind=label).inc()
    user = user if getattr(user, "pk", None) else None
    party = (Block.Target.USER, str(user.pk)) if user is not None else (Block.Target.IP, ip) if ip else None
    flood = kind in SAMPLED or _uncounted_auth_failure(kind, detail)
    if flood and not _first_in_window(kind, party):
        return
    try:
        SecurityEvent.objects.create(
            kind=kind, severity=severity, user=user, client_id=client_id or "", ip=ip or None, detail=detail
        )
    except Exception:  # the event must not turn a refusal into a crash
        logger.exception("could not store security event %s (%s)", kind, detail)
    else:
        logger.warning(
            "security event %s user=%s client=%s ip=%s %s", kind, getattr(user, "pk", None), client_id, ip, detail
        )
    if kind in COUNTED and not _uncounted_auth_failure(kind, detail) and party is not None:
        _count_toward_block(*party)


def _uncounted_auth_failure(kind: str, detail: dict[str, Any]) -> bool:
    return kind == Kind.AUTH_FAILURE and detail.get("endpoint") in UNCOUNTED_AUTH_ENDPOINTS


def _first_in_window(kind: str, party: tuple[str, str] | None) -> bool:
    """Whether this is the party's first event of `kind` for a block window (then it is stored): the window starts
    at the stored event, not at a clock boundary that would split one flood into two stored events."""
    window = settings.SECURITY_BLOCK_WINDOW
    who = ":".join(party) if party else "unknown"
    key = f"{settings.GUARD_NAMESPACE}:recorded:{kind}:{who}"
    try:
        return bool(cache.add(key, 1, window))
    except Exception:  # the cache is down: the metric has counted it; a row per refusal is what this avoids
        return False


# The block window is counted in this many slices, so that events within the last window are counted exactly, but for
# the oldest slice, which reaches partly past it and counts for the part still inside.
WINDOW_SLICES = 10


def _count_toward_block(target: str, value: str) -> None:
    """Count one event against `target` and block it when the events of the last window reach the threshold.

    Events are counted per slice of the window (WINDOW_SLICES): the events of the last window are those of the
    slices it covers, the oldest weighted by how much of it still lies within the window. With whole windows
    alone, events straddling a boundary were split between two counts, and an estimate of the earlier one's share
    came out a fraction short of twenty events that all fell within seconds of each other."""
    window = settings.SECURITY_BLOCK_WINDOW
    width = window / WINDOW_SLICES
    now = time.time()
    slice_ = int(now // width)
    prefix = f"{settings.GUARD_NAMESPACE}:violations:{target}:{value}"
    earlier = [f"{prefix}:{slice_ - back}" for back in range(1, WINDOW_SLICES + 1)]
    try:
        cache.add(f"{prefix}:{slice_}", 0, window + 2 * width)  # read again while it lies within a window
        count = cache.incr(f"{prefix}:{slice_}")
        counts = cache.get_many(earlier)
    except Exception:  # the cache is down: no block decision, the events are still stored
        logger.exception("could not count a security event toward a block")
        return
    inside = 1 - (now % width) / width  # of the oldest slice
    recent = count + sum(counts.get(key, 0) for key in earlier[:-1]) + counts.get(earlier[-1], 0) * inside
    if not recent >= settings.SECURITY_BLOCK_THRESHOLD > recent - 1:  # block once, when the threshold is reached
        return
    count = round(recent)
    until = timezone.now() + timedelta(seconds=settings.LOCKOUT_DURATION)
    Block.objects.create(
        target=target,
        value=value,
        reason=f"{count} security events within {window} s",
        until=until,
    )
    metrics.SECURITY_VIOLATIONS.labels(kind="blocked").inc()
    audited, subject = _audited_party(target, value)
    audit_record(action="security.blocked", outcome="blocked", subject=subject, target=audited)
    SecurityEvent.objects.create(
        kind=Kind.BLOCKED,
        severity=SecurityEvent.Severity.HIGH,
        user_id=value if target == Block.Target.USER else None,
        client_id=value if target == Block.Target.CLIENT else "",
        ip=value if target == Block.Target.IP else None,
        detail={"target": target, "until": until.isoformat(), "events": count},
    )


def security_counts_forget(*, user_id: Any) -> None:
    """Forget what the cache counts of a user toward a block, and the floods stored of her (erasure): those keys
    name her by her id, and would otherwise stay until their window ends. The slices still alive are those of the
    last window and the two it may reach past (the timeout `_count_toward_block` gives them)."""
    width = settings.SECURITY_BLOCK_WINDOW / WINDOW_SLICES
    current = int(time.time() // width)
    party = f"{Block.Target.USER}:{user_id}"
    counted = [
        f"{settings.GUARD_NAMESPACE}:violations:{party}:{slice_}"
        for slice_ in range(current - WINDOW_SLICES - 2, current + 1)
    ]
    recorded = [f"{settings.GUARD_NAMESPACE}:recorded:{kind}:{party}" for kind in Kind.values]
    try:
        cache.delete_many([*counted, *recorded])
    except Exception:  # the cache is down: the keys expire with their window
        logger.exception("could not forget the security counts of user %s", user_id)


# Every call checks the block list, and blocks are rare: each process remembers what it found for a party under
# the token epoch (apps.security.services.epoch_memory), which placing, changing or lifting a block bumps in every
# process (apps.security.signals), as revoking a token does (docs/caching.md). Without an epoch (Redis
# unreachable) the database is asked every time.
_blocks = epoch_memory()  # (target, value, epoch) -> blocked until (Unix time, 0: not)


def _blocked_until(targets: list[tuple[str, str]]) -> dict[tuple[str, str], float]:
    """Unix time until which each (target, value) is blocked (0 if not): remembered, else one query for all."""
    epoch = token_epoch()
    until: dict[tuple[str, str], float] = {}
    for pair in targets:
        remembered = recall(_blocks, pair, epoch)
        if remembered is not None:
            until[pair] = remembered
    missing = [pair for pair in targets if pair not in until]
    if not missing:
        return until
    wanted = Q()
    for target, value in missing:
        wanted |= Q(target=target, value=value)
    try:
        found = list(
            Block.objects.filter(wanted, lifted=False, until__gt=timezone.now()).values_list("target", "value", "until")
        )
    except (OperationalError, InterfaceError):
        # With the database down every call fails anyway, with a clear error; the block list is no reason to fail
        # differently.
        return {**until, **dict.fromkeys(missing, 0.0)}
    for pair in missing:
        until[pair] = max((end.timestamp() for *party, end in found if tuple(party) == pair), default=0.0)
        remember(_blocks, pair, until[pair], epoch)
    return until


def _block_targets(user_id: Any, ip: str | None, client_id: str | None) -> list[tuple[str, str]]:
    candidates = ((Block.Target.USER, user_id), (Block.Target.IP, ip), (Block.Target.CLIENT, client_id))
    return [(target, str(value)) for target, value in candidates if value]


def block_check(
    *,
    user_id: Any = None,
    ip: str | None = None,
    client_id: str | None = None,
) -> None:
    """Refuse a blocked user, address or client, saying until when. A signed-in caller is checked as its user and
    client, an unauthenticated request by its address."""
    targets = _block_targets(user_id, ip, client_id)
    if not targets:
        return
    for (target, _), until in _blocked_until(targets).items():
        if until > time.time():
            metrics.BLOCKED.labels(reason="blocked").inc()
            when = datetime.fromtimestamp(until, tz=UTC).strftime("%H:%M:%S UTC")
            raise Blocked(
                f"This {dict(Block.Target.choices)[target]} is blocked until {when} "
                f"{'by an administrator' if target == Block.Target.CLIENT else 'after repeated security violations'}."
            )


def address_blocked_until(*, ip: str) -> datetime | None:
    """When the block of address `ip` ends, or None if it is not blocked: the list `block_check` reads."""
    pair = (Block.Target.IP, ip)
    until = _blocked_until([pair])[pair]
    return datetime.fromtimestamp(until, tz=UTC) if until > time.time() else None


def block_lift(*, block: Block) -> None:
    """Lift a block before it expires (an administrator's action)."""
    block.lifted = True
    block.save(update_fields=["lifted"])  # bumps the token epoch: every process forgets what it remembered
    audited, subject = _audited_party(block.target, block.value)
    audit_record(action="security.block_lifted", outcome="success", subject=subject, target=audited)


def _audited_party(target: str, value: str) -> tuple[str, Subject | None]:
    """How the audit trail names a blocked party: an address or a client as it is; a user by her pseudonym, as her
    events' actor too (an event never stores a person's id: erasure leaves the trail untouched, and her id would
    outlive her account in it)."""
    if target != Block.Target.USER:
        return f"{target}:{value}"[:300], None
    subject = subject_for(get_user_model().objects.filter(pk=value).first())
    return (f"user:{subject.pseudonym}" if subject else "user"), subject
