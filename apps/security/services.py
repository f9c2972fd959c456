"""OAuth services: verifying a bearer token for the MCP endpoint, revoking tokens, disabling clients."""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.core.cache import cache, caches
from django.core.cache.backends.locmem import LocMemCache
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application, Grant, RefreshToken
from redis.exceptions import RedisError

from apps.compliance.audit import audit_record
from apps.core.cache import Memory, RedisCache, async_redis, publish, pushed
from apps.security.models import ClientPolicy
from apps.security.redis import RETRY_AFTER_FAILURE
from apps.security.validators import is_registration_token

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifiedToken:
    user_id: int | None  # None for client-credentials tokens, which act for no user
    client_id: str
    scopes: frozenset[str]
    expires_at: datetime
    resource: str | None


# Verified tokens and their users are remembered per process for a few seconds, keyed by the token epoch they
# were verified under; anything that can invalidate a token bumps the epoch (docs/caching.md).
TOKEN_CACHE_SECONDS = 10.0
TOKEN_MEMORY_LIMIT = 10_000  # entries per memory (tokens; users), least recently used forgotten first
TOKEN_EPOCH_KEY = "oauth:token-epoch"  # noqa: S105 - a cache key


def _new_epoch() -> int:
    # An int, which Django's Redis cache stores as its digits: `token_epoch_async` reads it without Django.
    return secrets.randbits(62)


def token_epoch() -> Any:
    """The current invalidation epoch, or None if the shared cache cannot be read (then nothing is trusted)."""
    backend = caches["default"]
    try:
        if isinstance(backend, RedisCache):
            pushed_epoch = _pushed_epoch(backend)
            if pushed_epoch is not None:
                return pushed_epoch
            epoch = cache.get(TOKEN_EPOCH_KEY)
            if isinstance(epoch, int):
                return epoch
            # None yet, or a uuid written by an earlier version (replaced, which forgets all)
            return publish(backend, TOKEN_EPOCH_KEY, _new_epoch(), only_if_absent=epoch is None)
        epoch = cache.get_or_set(TOKEN_EPOCH_KEY, _new_epoch, timeout=None)
        if not isinstance(epoch, int):  # written by an earlier version (a uuid): replaced, which forgets all
            epoch = _new_epoch()
            cache.set(TOKEN_EPOCH_KEY, epoch, timeout=None)
        return epoch
    except Exception:
        return None


async def token_epoch_async() -> int | None:
    """`token_epoch` from the event loop, without a worker thread: from this process's memory (the memory cache,
    or the epoch Redis pushed here), else with an asynchronous Redis client. None when that cannot tell (no epoch
    yet, another cache backend, Redis unreachable): then ask `token_authenticate`, in a worker thread."""
    backend = caches["default"]
    if isinstance(backend, LocMemCache):  # memory of this process: no I/O
        epoch = token_epoch()
        return epoch if isinstance(epoch, int) else None
    if not isinstance(backend, RedisCache):
        return None
    pushed_epoch = _pushed_epoch(backend)
    if pushed_epoch is not None or time.monotonic() < _async_epoch_unreadable_until[0]:
        return pushed_epoch
    try:
        value = await async_redis(backend).get(backend.make_and_validate_key(TOKEN_EPOCH_KEY))
    except (RedisError, OSError) as exc:  # not again for a while: the worker-thread path answers meanwhile
        # Said once per outage: not again at each retry, nor by each call that was waiting on the same reply.
        if not _async_epoch_unreadable_until[0]:
            logger.warning("cannot read the token epoch from Redis (%s); verifying tokens in worker threads", exc)
        _async_epoch_unreadable_until[0] = time.monotonic() + RETRY_AFTER_FAILURE
        return None
    _async_epoch_unreadable_until[0] = 0.0
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


_async_epoch_unreadable_until = [0.0]


def _pushed_epoch(backend: RedisCache) -> int | None:
    return pushed(backend, TOKEN_EPOCH_KEY).current()


_under_epoch: list[Memory] = []


def epoch_memory() -> Memory:
    """A memory of this process whose entries are kept under the token epoch (`recall`, `remember`): a bump made
    here forgets it at once, so that the change behind the bump applies here even when Redis cannot take it."""
    memory = Memory(TOKEN_MEMORY_LIMIT, max_age=TOKEN_CACHE_SECONDS)
    _under_epoch.append(memory)
    return memory


_verified = epoch_memory()  # (checksum, resource, epoch) -> VerifiedToken
_users = epoch_memory()  # (user id, epoch) -> user


def recall(memory: Memory, key: tuple[Any, ...], epoch: Any) -> Any | None:
    """What `memory` holds for `key` under `epoch`; nothing is trusted without an epoch (the cache is down)."""
    return None if epoch is None else memory.get((*key, epoch))


def remember(memory: Memory, key: tuple[Any, ...], value: Any, epoch: Any) -> None:
    if epoch is not None:
        memory.put((*key, epoch), value)


def token_epoch_bump(**kwargs: Any) -> None:
    """Invalidate every remembered token in every process (signal receiver and service helper)."""
    epoch, backend = _new_epoch(), caches["default"]
    try:
        if isinstance(backend, RedisCache):
            publish(backend, TOKEN_EPOCH_KEY, epoch)
        else:
            cache.set(TOKEN_EPOCH_KEY, epoch, timeout=None)
    except Exception:  # the cache is down: no process can read an epoch either, so none trusts its memory
        logger.warning("could not bump the token epoch", exc_info=True)
    # Entries under the old epoch are unreachable now wherever the bump arrived; forgetting them here frees their
    # memory at once, and makes the change apply here even if it did not reach Redis.
    for memory in _under_epoch:
        memory.forget()


def token_verify(*, raw_token: str, resource: str) -> VerifiedToken | None:
    """The token's grant if it is a live access token of an enabled client, issued for `resource` (or for no
    particular resource; see apps.security.resources), and not a registration access token (RFC 7592); None
    otherwise. Tokens are stored as checksums, so this never compares secrets directly."""
    return _token_remembered(raw_token, resource, token_epoch())


def token_authenticate(*, raw_token: str, resource: str) -> tuple[VerifiedToken, Any | None] | None:
    """What a bearer token on an MCP request stands for: its grant and the active user it acts for (None for a
    client-credentials token, or when the account is gone or disabled); None if the token is refused.

    Both are remembered per process under one reading of the invalidation epoch (a user's change bumps it too),
    so a busy client's call costs one cache read and no query (see also `token_authenticate_remembered`); what
    this process does not remember costs one query (`_token_found`)."""
    epoch = token_epoch()
    checksum = _checksum(raw_token)
    verified = _verified_remembered(checksum, resource, epoch)
    if verified is not None and verified.user_id is None:
        return verified, None
    user = recall(_users, (verified.user_id,), epoch) if verified is not None else None
    if verified is None or user is None:
        found = _token_found(checksum, resource)
        if found is None:
            return None
        verified, user = found
        remember(_verified, (checksum, resource), verified, epoch)
        if user is not None:
            remember(_users, (verified.user_id,), user, epoch)
    return verified, user


def token_authenticate_remembered(
    *, raw_token: str, resource: str, epoch: int | None
) -> tuple[VerifiedToken, Any | None] | None:
    """`token_authenticate`'s answer if this process remembers it under `epoch` (from `token_epoch_async`), with no
    query, so that the event loop can answer a busy client itself; None when it must ask `token_authenticate`."""
    verified = _verified_remembered(_checksum(raw_token), resource, epoch)
    if verified is None:
        return None
    if verified.user_id is None:
        return verified, None
    user = recall(_users, (verified.user_id,), epoch)
    return None if user is None else (verified, user)


def _checksum(raw_token: str) -> str:
    return hashlib.sha256(raw_token.encode("utf-8")).hexdigest()


def _verified_remembered(checksum: str, resource: str, epoch: Any) -> VerifiedToken | None:
    """The token's grant as this process verified it under `epoch`, if it has not expired since."""
    verified = recall(_verified, (checksum, resource), epoch)
    return verified if verified is not None and verified.expires_at > timezone.now() else None


def _token_remembered(raw_token: str, resource: str, epoch: Any) -> VerifiedToken | None:
    checksum = _checksum(raw_token)
    verified = _verified_remembered(checksum, resource, epoch)
    if verified is not None:
        return verified
    found = _token_found(checksum, resource)
    if found is None:
        return None
    remember(_verified, (checksum, resource), found[0], epoch)
    return found[0]


def _token_found(checksum: str, resource: str) -> tuple[VerifiedToken, Any | None] | None:
    """The token's grant and its active user (None if it has none, or a disabled one), in one query; None if the
    token is refused (unknown, expired, of a disabled or deleted client, a registration token, another resource)."""
    client_disabled = ClientPolicy.objects.filter(application_id=OuterRef("application_id"), disabled=True)
    token = (
        AccessToken.objects.select_related("application", "user")
        .filter(token_checksum=checksum)
        .annotate(client_disabled=Exists(client_disabled))
        # the whole user, whose fields the tools and the audit trail read; of the token only what is checked here
        .only("user", "scope", "expires", "resource", "application__client_id")
        .first()
    )
    if token is None or token.is_expired() or token.application is None or token.client_disabled:
        return None
    if is_registration_token(token.scope) or not token.allows_audience(resource):
        return None
    verified = VerifiedToken(
        user_id=token.user_id,
        client_id=token.application.client_id,
        scopes=frozenset(token.scope.split()),
        expires_at=token.expires,
        resource=token.resource[0] if token.resource else None,
    )
    return verified, token.user if token.user is not None and token.user.is_active else None


def token_revoke_all(*, user: AbstractBaseUser | None = None, application: Application | None = None) -> int:
    """Revoke every live token of a user, of a client, or of a user with a client. Returns how many."""
    if user is None and application is None:
        raise ValueError("token_revoke_all needs a user or an application")
    filters = {k: v for k, v in (("user", user), ("application", application)) if v is not None}
    with transaction.atomic():
        refreshed = RefreshToken.objects.filter(revoked__isnull=True, **filters)
        count = refreshed.update(revoked=timezone.now())
        count += AccessToken.objects.filter(**filters).delete()[0]
    return count


def application_revoke_for_user(*, user: AbstractBaseUser, application: Application) -> dict[str, int]:
    """Withdraw the person's consent to one application: its refresh tokens are revoked (their access tokens go
    with them), its other access tokens are revoked and its unexchanged authorization codes deleted, for this
    person only. Audited as the person's act. Returns what was revoked, by kind."""
    with transaction.atomic():
        refresh = list(RefreshToken.objects.filter(user=user, application=application, revoked__isnull=True))
        for refresh_token in refresh:
            refresh_token.revoke()
        access = list(AccessToken.objects.filter(user=user, application=application))
        for access_token in access:
            access_token.revoke()
        grants = Grant.objects.filter(user=user, application=application).delete()[0]
        # The delete signals bumped the epoch inside this transaction: a process verifying the token before the
        # commit could remember it under the new epoch. One more bump once the rows are gone for good.
        transaction.on_commit(token_epoch_bump)
    revoked = {"refresh_tokens": len(refresh), "access_tokens": len(access), "grants": grants}
    if not any(revoked.values()):
        return revoked
    audit_record(
        action="oauth.application_revoked",
        outcome="success",
        user=user,
        client_id=application.client_id,
        target=f"client:{application.client_id}",
        detail=revoked,
    )
    return revoked


def client_disable(*, application: Application, reason: str = "") -> None:
    """Disable a client: it can no longer authorize or get tokens, and its tokens are revoked."""
    ClientPolicy.objects.update_or_create(
        application=application, defaults={"disabled": True, "disabled_reason": reason[:200]}
    )
    token_revoke_all(application=application)
    audit_record(action="oauth.client_disabled", outcome="success", target=f"client:{application.client_id}")


def client_enable(*, application: Application) -> None:
    ClientPolicy.objects.update_or_create(application=application, defaults={"disabled": False, "disabled_reason": ""})
    audit_record(action="oauth.client_enabled", outcome="success", target=f"client:{application.client_id}")


def client_secret_rotate(*, application: Application) -> str:
    """Give a client a new secret (stored hashed) and return it, once. Its tokens stay valid; the old secret stops
    working for new grants at once. (A client becoming public gets one too, shown to nobody: see
    registration_views.ClientManagementView.put.)"""
    from oauth2_provider.generators import generate_client_secret

    secret = generate_client_secret()
    application.client_secret = secret  # hashed on save by django-oauth-toolkit
    application.save(update_fields=["client_secret"])
    audit_record(action="oauth.client_secret_rotated", outcome="success", target=f"client:{application.client_id}")
    return secret
