"""The guards of a tool call: each a small object with one job, which lets the call go on (`proceed`) or refuses it
with an ApplicationError. The tool invocation path (apps.tools.invocation.PIPELINE) declares their order among its
own steps; adding a guard is one class here and one line there.

Guards share state across processes and replicas through Redis when `REDIS_URL` is set; when Redis cannot be
reached, each falls back to this process's own state and goes back to Redis by itself (see apps.security.redis).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from django.conf import settings

from apps.core import metrics
from apps.core.errors import InsufficientScope, RateLimited
from apps.core.tracing import span
from apps.security import events, scopes
from apps.security.breakers import breaker_guarding, breaker_still_closed
from apps.security.bulkheads import bulkhead
from apps.security.ratelimits import bucket_of, token_take

T = TypeVar("T")


class Guarded(Protocol):
    """What the guards know of a call."""

    @property
    def tool_name(self) -> str: ...
    @property
    def group(self) -> str: ...
    @property
    def user_id(self) -> Any: ...
    @property
    def client_id(self) -> str | None: ...
    @property
    def scopes(self) -> frozenset[str]: ...
    @property
    def required_scope(self) -> str | None: ...
    @property
    def deadline(self) -> float | None: ...

    after_waiting: Callable[[], None] | None


Proceed = Callable[[Any], T]


class BlockList:
    """A blocked user or client is refused, whatever else is right or wrong with its call. The caller is signed
    in, so it is checked as itself: an address block (earned by unauthenticated abuse, see apps.security.events)
    refuses no signed-in call, since everyone behind a NAT or a proxy shares that address."""

    def __call__(self, call: Guarded, proceed: Proceed[T]) -> T:
        events.block_check(user_id=call.user_id, client_id=call.client_id)
        return proceed(call)


class ScopeRequired:
    """The token must grant the tool's scope."""

    def __call__(self, call: Guarded, proceed: Proceed[T]) -> T:
        if not scopes.has_scope(call.scopes, call.required_scope):
            raise InsufficientScope(call.required_scope or "", call.tool_name)
        return proceed(call)


class RateLimit:
    """A token from the user's bucket for the tool's group: an empty one refuses the call with the time to wait
    (apps.security.ratelimits). Calls refused before this take no token."""

    def __call__(self, call: Guarded, proceed: Proceed[T]) -> T:
        wait = token_take(bucket_of(group=call.group, user_id=call.user_id))
        if wait > 0:
            metrics.BLOCKED.labels(reason="rate_limit").inc()
            raise RateLimited(
                f"Rate limit reached for {call.group} tools ({settings.RATE_LIMIT_PER_MINUTE} per minute, bursts "
                f"of {settings.RATE_LIMIT_BURST}); retry in {wait:.1f} s.",
                retry_after=wait,
            )
        return proceed(call)


class Bulkhead:
    """A slot of the process's capacity, within the user's share, waited for in line until the call's deadline
    (apps.security.bulkheads)."""

    def __call__(self, call: Guarded, proceed: Proceed[T]) -> T:
        with span("guards.bulkhead"), bulkhead(call.group, user_id=call.user_id, deadline=call.deadline):
            return proceed(call)


class Breaker:
    """The group's circuit breaker: refused while it is open; only dependency failures count toward opening it
    (apps.security.breakers). A call that then waits in line for a tool process is asked again once it has one:
    the breaker may have opened meanwhile, and when the processes fail slowly (a database outage: each call waits
    out its connection timeout) the calls queued behind them would each fail as slowly in turn."""

    def __call__(self, call: Guarded, proceed: Proceed[T]) -> T:
        call.after_waiting = lambda: breaker_still_closed(call.group)
        with breaker_guarding(call.group):
            return proceed(call)
