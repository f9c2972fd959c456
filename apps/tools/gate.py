"""A tool call changes what its user holds (a score stored or deleted) only while the call is still wanted.

With tools in threads (TOOL_WORKER_PROCESSES = 0) a call past its time limit is answered `timeout`, but its thread
cannot be killed and runs on: unguarded, an import that took too long would store its score minutes after its
caller was told it had been stopped. So the runner gives each call's thread a gate (`gated`); the one module that
changes a user's scores (apps.tools.services.scores) makes each change through `changing()`; and at the time limit
the runner closes the gate (`CallGate.close`), which either keeps the change from ever being made or tells the
runner that it has been made, so that the caller is told which. A tool process is killed at its time limit instead.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextvars import ContextVar

from apps.core.errors import TimedOut


class CallGate:
    """Whether a call may still make its change, decided under one lock with the change itself."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._changed = False

    def close(self) -> bool:
        """Let no change through from now on; whether the call had already made one (waiting, if it is making one
        now, for it to be committed)."""
        with self._lock:
            self._closed = True
            return self._changed

    @contextlib.contextmanager
    def change(self) -> Iterator[None]:
        """Around the commit of the call's change: refused with TimedOut once the gate is closed."""
        with self._lock:
            if self._closed:
                raise TimedOut("The call was stopped at its time limit before its change was made.")
            yield
            self._changed = True


_gate: ContextVar[CallGate | None] = ContextVar("call_gate", default=None)


@contextlib.contextmanager
def gated(gate: CallGate) -> Iterator[None]:
    """Run a call's tool function under `gate` (in the thread that runs it)."""
    token = _gate.set(gate)
    try:
        yield
    finally:
        _gate.reset(token)


@contextlib.contextmanager
def changing() -> Iterator[None]:
    """Around the commit of a change to a user's scores: refused with TimedOut once the call's gate is closed; a
    call without a gate (a tool process, a command, a test) changes freely."""
    gate = _gate.get()
    if gate is None:
        yield
        return
    with gate.change():
        yield
