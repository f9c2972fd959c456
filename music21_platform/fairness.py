"""Waiting in line: shared by the bulkheads (apps.security.guards) and the tool processes (apps.tools.runner)."""

from __future__ import annotations

import collections
import threading


class FairSemaphore:
    """A semaphore that admits waiting callers in the order they came: a freed slot is handed to the longest
    waiter. threading.Semaphore (and a queue) lets a caller that arrives just as a slot frees take it ahead of
    those already waiting, so under steady load a few calls lose every race: the bulkheads' calls waited out
    BULKHEAD_WAIT_SECONDS and were refused as busy while later calls went through (p99 2-4 s, and errors, at 32
    clients on one worker), and calls waiting for a tool process waited up to 18 s while others took 0.2."""

    def __init__(self, size: int) -> None:
        self._lock = threading.Lock()
        self._free = size
        self._waiting: collections.deque[threading.Event] = collections.deque()

    def acquire(self, timeout: float | None) -> bool | None:
        """True when a slot was free, False after waiting for one, None when none came in time (never, when
        `timeout` is None)."""
        with self._lock:
            if self._free and not self._waiting:
                self._free -= 1
                return True
            turn = threading.Event()
            self._waiting.append(turn)
        if turn.wait(timeout):
            return False
        with self._lock:
            if turn.is_set():  # handed a slot just as the wait ran out
                return False
            self._waiting.remove(turn)
            return None

    def release(self) -> None:
        with self._lock:
            if self._waiting:
                self._waiting.popleft().set()  # the slot passes straight to the longest waiter
            else:
                self._free += 1
