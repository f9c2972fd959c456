"""Bulkheads: bounded concurrency per process, a share of it per user.

At most MAX_CONCURRENT_REQUESTS calls run at once in a process, and BH_MAX_CONCURRENT_ANALYSIS analyses; one user's
calls hold at most their share (BH_USER_SHARE) of each, so that one user's heavy scores cannot make everyone wait.
Calls beyond wait in line, first come first served (apps.core.fairness).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings

from apps.core import metrics
from apps.core.errors import Busy
from apps.core.fairness import FairSemaphore, user_share

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
def bulkhead(group: str, *, user_id: Any = None, deadline: float | None = None) -> Iterator[None]:
    """At most MAX_CONCURRENT_REQUESTS calls in this process, and BH_MAX_CONCURRENT_ANALYSIS analyses, of which one
    user's calls hold at most their share (BH_USER_SHARE). A call beyond waits in line, up to BULKHEAD_WAIT_SECONDS
    and never past its `deadline` (time.monotonic()), then is refused as busy."""
    compartments = [("all", settings.MAX_CONCURRENT_REQUESTS)]
    if group == "music_analysis":
        compartments.append(("music_analysis", settings.BH_MAX_CONCURRENT_ANALYSIS))
    held: list[FairSemaphore] = []
    try:
        for name, size in compartments:
            compartment = _compartment(name, size)
            wait = BULKHEAD_WAIT_SECONDS
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - time.monotonic()))
            admitted = compartment.acquire(timeout=wait, owner=user_id)
            if admitted is None:
                metrics.BLOCKED.labels(reason="busy").inc()
                raise Busy(_busy_message(compartment, name, user_id, wait))
            held.append(compartment)
        metrics.CONCURRENT.inc()
        try:
            yield
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
