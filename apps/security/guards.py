"""The guards of the invocation path: rate limits, bulkheads and circuit breakers.

State that must hold across processes and replicas (rate-limit buckets, breaker states) lives in Redis when
`REDIS_URL` is set; if Redis cannot be reached, each guard falls back to this process's own state, logs it once,
and goes back to Redis by itself when it answers again (see apps.security.redis).
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pybreaker
from django.conf import settings
from django.db import InterfaceError, OperationalError
from redis.exceptions import RedisError

from apps.compliance.audit import audit_record
from apps.core import metrics
from apps.core.errors import ApplicationError, Busy, CircuitOpen, DependencyFailed, RateLimited
from apps.core.fairness import FairSemaphore, user_share
from apps.security import events
from apps.security.groups import GROUPS
from apps.security.redis import redis_failed, redis_recovered, shared_redis

# --- Rate limits: a token bucket per (group, user) and per (group, client) ------------------------------------
#
# Hand-written because the libraries at hand count fixed windows (django-ratelimit), which cannot express
# "RATE_LIMIT_PER_MINUTE sustained with bursts of RATE_LIMIT_BURST". The buckets are updated atomically in Redis by
# the script below, so every process and replica draws from the same bucket.
#
# A call's admission is one round trip: the same script reads the block list's cached entries for the caller's
# address and client first (a blocked caller takes no token), takes the tokens, and reads the group's breaker
# state and failure count for the breaker to use (see `admit`). Each round trip to Redis costs more than the work
# it carries (0.15 ms on this machine); three of them per call cost 0.3 ms more than one.

_ADMIT_SCRIPT = """
local blocks, buckets, take = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1'
local capacity, rate, now = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local reply = {}
local blocked = false
for i = 1, blocks do
  local until_ = redis.call('GET', KEYS[i])
  reply[i] = until_ or false
  if tonumber(until_ or '') and tonumber(until_) > now then blocked = true end
end
local longest = 0
if take and not blocked then
  for i = blocks + 1, blocks + buckets do
    local state = redis.call('HMGET', KEYS[i], 'tokens', 'at')
    local tokens = tonumber(state[1]) or capacity
    local at = tonumber(state[2]) or now
    tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
    if tokens >= 1 then
      tokens = tokens - 1
    else
      longest = math.max(longest, (1 - tokens) / rate)
    end
    redis.call('HSET', KEYS[i], 'tokens', tokens, 'at', now)
    redis.call('EXPIRE', KEYS[i], math.ceil(capacity / rate) + 60)
  end
end
reply[blocks + 1] = tostring(longest)
local reads = tonumber(ARGV[7])
for i = blocks + buckets + 1, blocks + buckets + reads do
  reply[#reply + 1] = redis.call('GET', KEYS[i])
end
for i = blocks + buckets + reads + 1, #KEYS do
  local stamp = redis.call('GET', KEYS[i])
  if not stamp then
    stamp = ARGV[8]
    redis.call('SET', KEYS[i], stamp, 'EX', tonumber(ARGV[9]))
  end
  reply[#reply + 1] = stamp
end
return reply
"""

_local_buckets: dict[str, tuple[float, float]] = {}
_local_lock = threading.Lock()
_scripts: dict[int, Any] = {}


def _bucket_parameters() -> tuple[float, float]:
    capacity = float(max(1, settings.RATE_LIMIT_BURST))
    rate = settings.RATE_LIMIT_PER_MINUTE / 60.0
    return capacity, rate


def _take_local(key: str, capacity: float, rate: float, now: float) -> float:
    with _local_lock:
        tokens, at = _local_buckets.get(key, (capacity, now))
        tokens = min(capacity, tokens + max(0.0, now - at) * rate)
        if tokens >= 1:
            _local_buckets[key] = (tokens - 1, now)
            return 0.0
        _local_buckets[key] = (tokens, now)
        return (1 - tokens) / rate


def _user_bucket(group: str, user_id: Any) -> str:
    return f"{group}:user:{user_id}"


def _redis_key(bucket: str) -> str:
    return f"{settings.GUARD_NAMESPACE}:rl:{bucket}"


def _buckets(group: str, user_id: Any, client_id: str | None) -> list[str]:
    return [_user_bucket(group, user_id)] + ([f"{group}:client:{client_id}"] if client_id else [])


def _admit_in_redis(
    client: Any, *, blocks: list[str], buckets: list[str], take: bool, reads: list[str], stamps: tuple[str, ...] = ()
) -> tuple[list[bytes | None], float, list[bytes | None], list[bytes]]:
    """Run the admission script: the cached block-list entries, the seconds to wait for a token (0: taken), the
    values of `reads`, and those of the `stamps` (see `stamp_renew`). Raises RedisError."""
    capacity, rate = _bucket_parameters()
    script = _scripts.get(id(client)) or _scripts.setdefault(id(client), client.register_script(_ADMIT_SCRIPT))
    reply = script(
        keys=[*blocks, *(_redis_key(bucket) for bucket in buckets), *reads, *(_stamp_key(s) for s in stamps)],
        args=[len(blocks), len(buckets), int(take), capacity, rate, time.time(), len(reads), _new_stamp(), STAMP_TTL],
    )
    read_at, stamp_at = len(blocks) + 1, len(blocks) + 1 + len(reads)
    return reply[: len(blocks)], float(reply[len(blocks)]), reply[read_at:stamp_at], reply[stamp_at:]


def _take(keys: list[str]) -> float:
    """Take a token from each bucket in `keys` (one round trip to Redis); 0 when every bucket had one, else the
    seconds until the emptiest has one again."""
    client = shared_redis()
    if client is not None:
        try:
            _, wait, _, _ = _admit_in_redis(client, blocks=[], buckets=keys, take=True, reads=[])
        except RedisError as exc:
            redis_failed(exc)
        else:
            redis_recovered()
            return wait
    capacity, rate = _bucket_parameters()
    now = time.time()
    return max(_take_local(key, capacity, rate, now) for key in keys)


def _refuse_if_waiting(group: str, wait: float) -> None:
    if wait > 0:
        metrics.BLOCKED.labels(reason="rate_limit").inc()
        raise RateLimited(
            f"Rate limit reached for {group} tools ({settings.RATE_LIMIT_PER_MINUTE} per minute, bursts of "
            f"{settings.RATE_LIMIT_BURST}); retry in {wait:.1f} s.",
            retry_after=wait,
        )


def rate_limit_check(*, group: str, user_id: Any, client_id: str | None) -> None:
    """Refuse the call with the time to wait when the user's or the client's bucket for this group is empty."""
    _refuse_if_waiting(group, _take(_buckets(group, user_id, client_id)))


@dataclass(frozen=True)
class Admission:
    """What the admission read on its way: the group's shared breaker state, for `call_through_breaker` to use if
    the call goes straight on to it, and the current value of each stamp asked for (None without Redis)."""

    breaker: BreakerReading | None = None
    stamps: tuple[str | None, ...] = ()


def admit(
    *,
    group: str,
    user_id: Any,
    client_id: str | None,
    ip: str | None,
    refusal: ApplicationError | None = None,
    stamps: tuple[str, ...] = (),
) -> Admission:
    """Admit a call, or refuse it: a blocked user or client first, then `refusal` (the call's own fault, found
    before: a missing scope, invalid arguments), then an empty rate-limit bucket. A refused call takes no token.

    The caller is signed in, so it is blocked as itself: an address block (earned by unauthenticated abuse, see
    apps.security.events) does not refuse it, since everyone behind a NAT or a proxy shares that address. `ip`
    (where the call came from) is therefore no reason to refuse it.

    With Redis this is one round trip, which also reads the group's shared breaker state and the `stamps`.
    Without Redis (or when it fails) each check reads its own state, and there are no stamps."""
    cached: dict[tuple[str, str], Any] | None = None
    wait: float | None = None
    reading: BreakerReading | None = None
    stamped: tuple[str | None, ...] = (None,) * len(stamps)
    client = shared_redis()
    if client is not None:
        blocks = events.block_cache_keys(user_id=user_id, client_id=client_id)
        storage = breaker(group)._state_storage
        reads = storage.keys() if isinstance(storage, _SharedStorage) else []
        try:
            values, wait, read, stamp_values = _admit_in_redis(
                client,
                blocks=list(blocks.values()),
                buckets=_buckets(group, user_id, client_id),
                take=refusal is None,
                reads=reads,
                stamps=stamps,
            )
        except RedisError as exc:
            redis_failed(exc)
        else:
            redis_recovered()
            # An entry not cached is looked up in the database by block_check; if that finds a block, the script
            # took a token from a blocked caller's bucket, once per block-list cache period.
            cached = dict(zip(blocks, values, strict=True))
            reading = BreakerReading(*read) if reads else None
            stamped = tuple(value.decode() for value in stamp_values)
    events.block_check(user_id=user_id, client_id=client_id, cached=cached)
    if refusal is not None:
        raise refusal
    _refuse_if_waiting(group, _take(_buckets(group, user_id, client_id)) if wait is None else wait)
    return Admission(reading, stamped)


# --- Stamps: a value in Redis that changes whenever what it stands for changes ---------------------------------
#
# A process may keep something it read from the database (a score's row) under the stamp the call's admission
# read; a later call that reads the same stamp may use it again without the query. Whoever changes that thing
# renews the stamp once the change is committed. A stamp missing from Redis (never set, expired, or lost with
# Redis) is set afresh by the next admission, to a random value nothing was kept under.
STAMP_TTL = 86_400  # seconds; a stamp nobody reads or renews for a day is set afresh when next read


def _stamp_key(name: str) -> str:
    return f"{settings.GUARD_NAMESPACE}:stamp:{name}"


def _new_stamp() -> str:
    return secrets.token_hex(8)


def stamp_renew(name: str) -> None:
    """Change the stamp `name`: what any process kept under its old value is read afresh. If Redis cannot be
    reached, processes keep it until their own time limit on what they keep (see apps.tools.selectors)."""
    _write_shared(lambda client: client.set(_stamp_key(name), _new_stamp(), ex=STAMP_TTL))


def stamp_forget(name: str) -> None:
    """Drop the stamp `name` from Redis (erasure: a user's id must not linger there); the next admission that
    reads it sets it afresh."""
    _write_shared(lambda client: client.delete(_stamp_key(name)))


def _write_shared(write: Callable[[Any], Any]) -> None:
    """`write` to the shared Redis, if there is one and it answers (a failure is recorded, not raised)."""
    client = shared_redis()
    if client is None:
        return
    try:
        write(client)
    except RedisError as exc:
        redis_failed(exc)


def rate_limits_forget(*, user_id: Any) -> None:
    """Drop a user's buckets everywhere (erasure): their id must not linger in Redis."""
    keys = [_user_bucket(group, user_id) for group in GROUPS]
    with _local_lock:
        for key in keys:
            _local_buckets.pop(key, None)
    _write_shared(lambda client: client.delete(*[_redis_key(key) for key in keys]))


def rate_limits_reset() -> None:
    """Forget this process's fallback buckets (tests, or an administrator lifting limits)."""
    with _local_lock:
        _local_buckets.clear()


# --- Bulkheads: bounded concurrency per process, a share of it per user ---------------------------------------

BULKHEAD_WAIT_SECONDS = 2.0


_compartments: dict[tuple[str, int, int], FairSemaphore] = {}
_compartments_lock = threading.Lock()


def _compartment(name: str, size: int) -> FairSemaphore:
    share = user_share(size)
    with _compartments_lock:
        key = (name, size, share)  # a changed setting (tests) gets a fresh compartment
        if key not in _compartments:
            _compartments[key] = FairSemaphore(size, share)
        return _compartments[key]


@contextlib.contextmanager
def bulkhead(group: str, *, user_id: Any = None, deadline: float | None = None) -> Iterator[bool]:
    """At most MAX_CONCURRENT_REQUESTS calls in this process, and BH_MAX_CONCURRENT_ANALYSIS analyses, of which one
    user's calls hold at most their share (BH_USER_SHARE). A call beyond waits in line, up to BULKHEAD_WAIT_SECONDS
    and never past its `deadline` (time.monotonic()), then is refused as busy. Yields whether it went in at once."""
    compartments = [("all", settings.MAX_CONCURRENT_REQUESTS)]
    if group == "music_analysis":
        compartments.append(("music_analysis", settings.BH_MAX_CONCURRENT_ANALYSIS))
    held: list[FairSemaphore] = []
    at_once = True
    try:
        for name, size in compartments:
            compartment = _compartment(name, size)
            wait = BULKHEAD_WAIT_SECONDS
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - time.monotonic()))
            admitted = compartment.acquire(timeout=wait, owner=user_id)
            at_once = at_once and bool(admitted)
            if admitted is None:
                metrics.BLOCKED.labels(reason="busy").inc()
                raise Busy(_busy_message(compartment, name, user_id, wait))
            held.append(compartment)
        metrics.CONCURRENT.inc()
        try:
            yield at_once
        finally:
            metrics.CONCURRENT.dec()
    finally:
        for compartment in reversed(held):
            compartment.release(owner=user_id)


def _busy_message(compartment: FairSemaphore, name: str, user_id: Any, waited: float) -> str:
    what = "analyses" if name != "all" else "calls"
    mine = compartment.holds(user_id)
    if compartment.share < compartment.size and mine >= compartment.share:  # their share, not the others, held it back
        return (
            f"You already have {mine} {what} in progress, your share of this server's {compartment.size}; this call "
            f"waited {waited:.1f} s for one of them to finish. Try again when they have."
        )
    return (
        f"The server is busy ({compartment.size} {what} in progress); this call waited {waited:.1f} s for a slot. "
        "Try again in a few seconds."
    )


# --- Circuit breakers: one per guard group, state shared through Redis ----------------------------------------


# What a breaker counts: failures of what the server depends on, and nothing else. A caller's invalid arguments,
# a score music21 cannot read, write or analyse, a score that runs to the time limit, an unexpected error in a
# tool on one caller's score: each is that caller's, and counting it would let one user pause a group for
# everyone. A failing dependency fails every caller alike, which is what a breaker is for.
DEPENDENCY_FAILURES: tuple[type[BaseException], ...] = (
    DependencyFailed,  # the database unavailable (ServiceUnavailable), a tool worker process died (WorkerDied)
    OperationalError,  # the database, when its error reaches the breaker unconverted
    InterfaceError,
    RedisError,
)


def _callers_fault(exc: BaseException) -> bool:
    """Excluded from a breaker's failure count (pybreaker's `exclude`): everything but DEPENDENCY_FAILURES."""
    return not isinstance(exc, DEPENDENCY_FAILURES)


class _StateChanges(pybreaker.CircuitBreakerListener):
    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        metrics.BREAKER_STATE_CHANGES.labels(circuit_name=cb.name).inc()
        audit_record(action="breaker.state", outcome=new_state.name, target=cb.name, detail={"from": old_state.name})


class _Breaker(pybreaker.CircuitBreaker):
    """pybreaker's breaker, except that the guarded call runs outside the breaker's lock.

    pybreaker 1.4 holds its lock for the whole of `call`, so each process let one call of a group through at a
    time: a long chord analysis held up every key analysis behind it, and two uvicorn workers served at most
    two calls at once. Here the lock covers only reading and changing the state. While the breaker is half-open,
    one trial call goes through at a time and the others are refused as if it were still open.

    A success resets the shared failure count only when it was not already zero: with Redis that is one round
    trip per call instead of two. Failures in another process during this call are then not reset by it, so
    the count is of failures not interrupted by a success that began after them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._trial_running = False

    def call(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        return self.call_after(None, func, *args, **kwargs)

    def call_after(self, reading: BreakerReading | None, func: Any, *args: Any, **kwargs: Any) -> Any:
        """`call`, with the shared state as `reading` found it just before (None: read it now)."""
        with self._lock:
            shared, failures = _snapshot(self._state_storage, reading)
            if shared != self._state.name:  # changed by another process: adopt it (listeners are told)
                self.state = shared
            state = self._state
            if state.name == pybreaker.STATE_OPEN:
                opened_at = self._state_storage.opened_at
                if opened_at and datetime.now(UTC) < opened_at + timedelta(seconds=self.reset_timeout):
                    raise pybreaker.CircuitBreakerError("Timeout not elapsed yet, circuit breaker still open")
                self.half_open()
                state = self.state
            trial = state.name == pybreaker.STATE_HALF_OPEN
            if trial:
                if self._trial_running:
                    raise pybreaker.CircuitBreakerError("A trial call is under way, circuit breaker half-open")
                self._trial_running = True
            for listener in self.listeners:
                listener.before_call(self, func, *args, **kwargs)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            with self._lock:
                self._trial_running = self._trial_running and not trial
                if self.is_system_error(exc):
                    state._handle_error(exc, reraise=False)  # counts it; trips the breaker at the threshold
                # Otherwise the caller's own failure, which says nothing about the dependencies either way:
                # pybreaker would count it as a success, and one caller's errors would keep resetting the count
                # of a dependency's failures.
            raise
        with self._lock:
            self._trial_running = self._trial_running and not trial
            if trial or failures:
                state._handle_success()
            else:  # the shared failure count was zero: nothing to reset (a Redis write less per call)
                for listener in self.listeners:
                    listener.success(self)
        return result


@dataclass(frozen=True)
class BreakerReading:
    """A breaker's shared state and failure count as Redis held them (read with a call's admission)."""

    state: bytes | None
    failures: bytes | None


class _SharedStorage(pybreaker.CircuitRedisStorage):
    """pybreaker's Redis storage, which can also read the state and the failure count in one round trip."""

    def keys(self) -> list[str]:
        return [self._namespace("state"), self._namespace("fail_counter")]

    def snapshot(self, reading: BreakerReading | None = None) -> tuple[str, int]:
        if reading is None:
            try:
                reading = BreakerReading(*self._redis.mget(self.keys()))
            except RedisError:
                self.logger.exception("RedisError: falling back to default circuit state")
                return self._fallback_circuit_state, 0
        if reading.state is None:  # missing (expired or flushed): start again closed, as pybreaker does
            self._initialize_redis_state(self._fallback_circuit_state)
            return self._fallback_circuit_state, 0
        return reading.state.decode(), int(reading.failures or 0)


def _snapshot(storage: pybreaker.CircuitBreakerStorage, reading: BreakerReading | None) -> tuple[str, int]:
    if isinstance(storage, _SharedStorage):
        return storage.snapshot(reading)
    return storage.state, storage.counter


_breakers: dict[str, pybreaker.CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def _storage(group: str) -> pybreaker.CircuitBreakerStorage:
    client = shared_redis()
    if client is not None:
        try:
            return _SharedStorage(pybreaker.STATE_CLOSED, client, namespace=f"{settings.GUARD_NAMESPACE}:cb:{group}")
        except RedisError as exc:
            redis_failed(exc)
    return pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)


def breaker(group: str) -> pybreaker.CircuitBreaker:
    """The breaker of a guard group (thresholds from CB_FAILURE_THRESHOLD and CB_RECOVERY_TIMEOUT)."""
    with _breakers_lock:
        existing = _breakers.get(group)
        if existing is None or (
            existing.fail_max,
            existing.reset_timeout,
        ) != (settings.CB_FAILURE_THRESHOLD, settings.CB_RECOVERY_TIMEOUT):
            existing = _Breaker(
                fail_max=settings.CB_FAILURE_THRESHOLD,
                reset_timeout=settings.CB_RECOVERY_TIMEOUT,
                exclude=[_callers_fault],
                listeners=[_StateChanges()],
                state_storage=_storage(group),
                name=group,
                throw_new_error_on_trip=False,  # the call that trips the breaker reports its own error
            )
            _breakers[group] = existing
        return existing


def call_through_breaker(
    group: str, function: Any, *args: Any, reading: BreakerReading | None = None, **kwargs: Any
) -> Any:
    """Run `function` under the group's breaker; an open breaker refuses at once. `reading`: the breaker's shared
    state as `admit` read it, if nothing (such as a wait in the bulkhead) came between."""
    try:
        return breaker(group).call_after(reading, function, *args, **kwargs)
    except pybreaker.CircuitBreakerError:
        metrics.BLOCKED.labels(reason="circuit_open").inc()
        raise CircuitOpen(
            f"The {group} tools are failing and are paused for up to {settings.CB_RECOVERY_TIMEOUT:.0f} s "
            "(circuit breaker open); try again later."
        ) from None


def breaker_states() -> dict[str, dict[str, Any]]:
    return {group: {"state": breaker(group).current_state, "failures": breaker(group).fail_counter} for group in GROUPS}


def breaker_reset(group: str) -> None:
    """Close a group's breaker (an administrator's action)."""
    breaker(group).close()
    audit_record(action="breaker.reset", outcome="closed", target=group)


def breakers_forget() -> None:
    """Drop this process's breaker objects (tests); shared state in Redis is untouched."""
    with _breakers_lock:
        _breakers.clear()
