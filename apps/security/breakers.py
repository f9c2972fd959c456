"""Circuit breakers: one per guard group, pybreaker's, with its Redis storage so that every process and replica
shares one state (per-process memory when Redis is not configured, or was down when the breaker was built).

A breaker counts failures of what the server depends on, and nothing else. A caller's invalid arguments, a score
music21 cannot read, write or analyse, a score that runs to the time limit, an unexpected error in a tool on one
caller's score: each is that caller's, and counting it would let one user pause a group for everyone. A failing
dependency fails every caller alike, which is what a breaker is for.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import pybreaker
from django.conf import settings
from django.db import InterfaceError, OperationalError
from redis.exceptions import RedisError

from apps.compliance.audit import audit_record
from apps.core import metrics
from apps.core.errors import CircuitOpen, DependencyFailed
from apps.security.groups import GROUPS
from apps.security.redis import redis_failed, shared_redis

DEPENDENCY_FAILURES: tuple[type[BaseException], ...] = (
    DependencyFailed,  # the database unavailable (ServiceUnavailable), a tool worker process died (WorkerDied)
    OperationalError,  # the database, when its error reaches the breaker unconverted
    InterfaceError,
    RedisError,
)


# While a dependency stays down, an open breaker lets a trial call through every CB_RECOVERY_TIMEOUT and opens again
# when it fails: that round trip says nothing new, so the trail records a breaker opening and closing, not each turn
# (each would be an audit write, which waits for the database when the database is what is down).
_TRIAL_ROUND = {(pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN), (pybreaker.STATE_HALF_OPEN, pybreaker.STATE_OPEN)}


class _StateChanges(pybreaker.CircuitBreakerListener):
    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        metrics.BREAKER_STATE_CHANGES.labels(circuit_name=cb.name).inc()
        previous = getattr(old_state, "name", None)
        if (previous, new_state.name) in _TRIAL_ROUND:
            return
        audit_record(action="breaker.state", outcome=new_state.name, target=cb.name, detail={"from": previous})


@dataclass(frozen=True)
class _Guard:
    """What this process keeps of a group's breaker: pybreaker's breaker, the storage it was given (whose public
    `opened_at` tells when an open breaker may be tried again), and the lock a half-open breaker's trial call holds."""

    breaker: pybreaker.CircuitBreaker
    storage: pybreaker.CircuitBreakerStorage
    trial: threading.Lock


_guards: dict[str, _Guard] = {}
_guards_lock = threading.Lock()


class SharedStorage(pybreaker.CircuitBreakerStorage):
    """A breaker's state in Redis, shared by every process and replica, through pybreaker's public storage
    interface. Unlike pybreaker's own Redis storage it can read the state and the failure count in one round trip
    (`reading`), so that a call through a closed breaker with no failures counted costs one read and no write. When
    Redis fails, the failure is recorded once (apps.security.redis) and the breaker reads as closed with no
    failures, as pybreaker's storage falls back, without logging every call."""

    def __init__(self, client: Any, namespace: str) -> None:
        super().__init__("redis")
        self._client = client
        self._keys = {name: f"{namespace}:{name}" for name in ("state", "failures", "successes", "opened_at")}

    def _do(self, command: Any, fallback: Any = None) -> Any:
        try:
            return command(self._client)
        except RedisError as exc:
            redis_failed(exc)
            return fallback

    def reading(self) -> tuple[str, int]:
        """The state and the failure count, in one round trip."""
        state, failures = self._do(lambda r: r.mget(self._keys["state"], self._keys["failures"]), (None, None))
        return (state.decode() if state else pybreaker.STATE_CLOSED), int(failures or 0)

    @property
    def state(self) -> str:
        return self.reading()[0]

    @state.setter
    def state(self, state: str) -> None:
        self._do(lambda r: r.set(self._keys["state"], state))

    def increment_counter(self) -> None:
        self._do(lambda r: r.incr(self._keys["failures"]))

    def reset_counter(self) -> None:
        self._do(lambda r: r.set(self._keys["failures"], 0))

    def increment_success_counter(self) -> None:
        self._do(lambda r: r.incr(self._keys["successes"]))

    def reset_success_counter(self) -> None:
        self._do(lambda r: r.set(self._keys["successes"], 0))

    @property
    def counter(self) -> int:
        return self.reading()[1]

    @property
    def success_counter(self) -> int:
        return int(self._do(lambda r: r.get(self._keys["successes"])) or 0)

    @property
    def opened_at(self) -> datetime | None:
        stamp = self._do(lambda r: r.get(self._keys["opened_at"]))
        return datetime.fromtimestamp(float(stamp), tz=UTC) if stamp else None

    @opened_at.setter
    def opened_at(self, when: datetime) -> None:
        self._do(lambda r: r.set(self._keys["opened_at"], when.timestamp()))


def _storage(group: str) -> pybreaker.CircuitBreakerStorage:
    client = shared_redis()
    if client is not None:
        return SharedStorage(client, f"{settings.GUARD_NAMESPACE}:cb:{group}")
    return pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)


def _reading(storage: pybreaker.CircuitBreakerStorage) -> tuple[str, int]:
    if isinstance(storage, SharedStorage):
        return storage.reading()
    return storage.state, storage.counter


def _guard(group: str) -> _Guard:
    with _guards_lock:
        existing = _guards.get(group)
        thresholds = (settings.CB_FAILURE_THRESHOLD, settings.CB_RECOVERY_TIMEOUT)
        if existing is None or (existing.breaker.fail_max, existing.breaker.reset_timeout) != thresholds:
            storage = _storage(group)
            breaker = pybreaker.CircuitBreaker(
                fail_max=settings.CB_FAILURE_THRESHOLD,
                reset_timeout=settings.CB_RECOVERY_TIMEOUT,
                listeners=[_StateChanges()],
                state_storage=storage,
                name=group,
                throw_new_error_on_trip=False,  # the call that trips the breaker reports its own error
            )
            existing = _guards[group] = _Guard(breaker, storage, threading.Lock())
        return existing


def breaker(group: str) -> pybreaker.CircuitBreaker:
    """The breaker of a guard group (thresholds from CB_FAILURE_THRESHOLD and CB_RECOVERY_TIMEOUT)."""
    return _guard(group).breaker


@contextlib.contextmanager
def breaker_guarding(group: str) -> Iterator[None]:
    """Run the block under the group's breaker: refused at once (CircuitOpen) while the breaker is open; a
    dependency failure inside counts toward opening it and a success resets the count, while the caller's own
    failures count neither way. While it is half-open, one trial call at a time goes through in each process.

    pybreaker's `call` holds the breaker's lock for the whole guarded call, which would let one call of a group
    through at a time per process; so the breaker is asked before the call and told its outcome after, each
    through pybreaker's public API, and the call itself runs outside the lock."""
    guard = _guard(group)
    cb = guard.breaker
    state, failures = _reading(guard.storage)  # one round trip with Redis
    if state == pybreaker.STATE_OPEN:
        opened_at = guard.storage.opened_at
        if opened_at and datetime.now(UTC) < opened_at + timedelta(seconds=cb.reset_timeout):
            _refuse(group)
        cb.half_open()
        state = pybreaker.STATE_HALF_OPEN
    trial = state == pybreaker.STATE_HALF_OPEN
    if trial and not guard.trial.acquire(blocking=False):
        _refuse(group)  # another call is the trial: this one waits for its verdict like any other
    try:
        yield
    except DEPENDENCY_FAILURES as exc:
        with contextlib.suppress(type(exc), pybreaker.CircuitBreakerError):  # opened meanwhile elsewhere
            cb.call(_fail, exc)  # counted by pybreaker, which opens the breaker at the threshold
        raise
    else:
        if trial:
            with contextlib.suppress(pybreaker.CircuitBreakerError):  # opened meanwhile elsewhere
                cb.call(_succeed)  # the trial went through: pybreaker closes the breaker
        elif failures:
            # Failures are counted while consecutive: a success resets a count it saw, and a call that saw none
            # writes nothing (failures elsewhere during this call are then not reset by it).
            guard.storage.reset_counter()
    finally:
        if trial:
            guard.trial.release()


def breaker_still_closed(group: str) -> None:
    """Refuse (CircuitOpen) a call that passed the group's breaker and then waited (for a tool process) while the
    breaker opened: when the tool processes fail slowly (a database outage: each call waits out its connection
    timeout), the calls queued behind them would otherwise each fail as slowly in turn. An open breaker whose
    recovery time is up lets the call on, as it would let a trial through."""
    guard = _guard(group)
    if _reading(guard.storage)[0] == pybreaker.STATE_OPEN:
        opened_at = guard.storage.opened_at
        if opened_at and datetime.now(UTC) < opened_at + timedelta(seconds=guard.breaker.reset_timeout):
            _refuse(group)


def _fail(exc: BaseException) -> NoReturn:
    raise exc


def _succeed() -> None:
    return None


def _refuse(group: str) -> NoReturn:
    metrics.BLOCKED.labels(reason="circuit_open").inc()
    raise CircuitOpen(
        f"The {group} tools are failing and are paused for up to {settings.CB_RECOVERY_TIMEOUT:g} s "
        "(circuit breaker open); try again later."
    )


def breaker_states() -> dict[str, dict[str, Any]]:
    return {group: {"state": breaker(group).current_state, "failures": breaker(group).fail_counter} for group in GROUPS}


def breaker_reset(group: str) -> None:
    """Close a group's breaker (an administrator's action)."""
    breaker(group).close()
    audit_record(action="breaker.reset", outcome="closed", target=group)


def breakers_forget() -> None:
    """Drop this process's breaker objects (tests); shared state in Redis is untouched."""
    with _guards_lock:
        _guards.clear()
