"""Waiting in line: shared by the bulkheads (apps.security.bulkheads) and the tool processes (apps.tools.runner)."""

from __future__ import annotations

import collections
import threading
from collections.abc import Hashable

from django.conf import settings


def user_share(size: int) -> int:
    """How many of `size` slots one user's calls may hold at once: BH_USER_SHARE of them, at least one."""
    return max(1, int(size * settings.BH_USER_SHARE))


class FairSemaphore:
    """`size` slots handed out in the order callers came, at most `share` of them to one owner (a user) at once.

    In order: a freed slot goes to the longest waiter. threading.Semaphore (and a queue) lets a caller that arrives
    just as a slot frees take it ahead of those already waiting, so under steady load a few calls lose every race:
    the bulkheads' calls waited out BULKHEAD_WAIT_SECONDS and were refused as busy while later calls went through
    (p99 2-4 s, and errors, at 32 clients on one worker), and calls waiting for a tool process waited up to 18 s
    while others took 0.2.

    A share per owner: without it one user's slow calls (a flood of heavy scores) took every slot, and another
    user's 25 ms call waited seconds for one of them to end. An owner holding its share waits, behind its own
    earlier calls, while the calls of other owners behind it go through; slots left idle because their only
    claimants are at their share stay idle (the price of a hard cap: no call can be preempted once running).
    """

    def __init__(self, size: int, share: int | None = None) -> None:
        self.size = size
        self.share = size if share is None else share
        self._lock = threading.Lock()
        self._free = size
        self._held: collections.Counter[Hashable] = collections.Counter()
        self._waiting: collections.deque[tuple[Hashable, threading.Event]] = collections.deque()

    def acquire(self, timeout: float | None, owner: Hashable = None) -> bool | None:
        """True when a slot was free, False after waiting for one, None when none came in time (never, when
        `timeout` is None)."""
        with self._lock:
            # Waiters left in line are all at their share (`_hand_out` leaves no other while a slot is free), so a
            # free slot and an owner below its share mean nobody eligible is ahead.
            if self._free and self._held[owner] < self.share:
                self._take(owner)
                return True
            turn = threading.Event()
            self._waiting.append((owner, turn))
        if turn.wait(timeout):
            return False
        with self._lock:
            if turn.is_set():  # handed a slot just as the wait ran out
                return False
            self._waiting.remove((owner, turn))
            return None

    def release(self, owner: Hashable = None) -> None:
        with self._lock:
            self._held[owner] -= 1
            if not self._held[owner]:
                del self._held[owner]
            self._free += 1
            self._hand_out()

    def holds(self, owner: Hashable) -> int:
        """How many slots `owner` holds now."""
        with self._lock:
            return self._held[owner]

    def _take(self, owner: Hashable) -> None:
        self._free -= 1
        self._held[owner] += 1

    def _hand_out(self) -> None:
        """Free slots go straight to the longest waiters whose owners are below their share."""
        for owner, turn in list(self._waiting):
            if not self._free:
                return
            if self._held[owner] < self.share:
                self._waiting.remove((owner, turn))
                self._take(owner)
                turn.set()
