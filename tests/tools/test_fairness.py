"""The line in front of the bulkheads and the tool processes (apps.core.fairness): first come, first served,
and one user's calls hold at most their share."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from apps.core.db import with_connections
from apps.core.errors import Busy
from apps.core.fairness import FairSemaphore, user_share
from apps.security import bulkheads


def _in_line(slots: FairSemaphore, count: int) -> None:
    deadline = time.monotonic() + 10  # functional bound only
    while len(slots._waiting) < count:
        assert time.monotonic() < deadline
        time.sleep(0.001)


def _served(served: list[str], count: int) -> None:
    deadline = time.monotonic() + 10  # functional bound only
    while len(served) < count:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    time.sleep(0.05)  # a call served out of turn would show up in this time
    assert len(served) == count


def test_a_users_share_is_half_the_capacity_and_at_least_one(settings: Any) -> None:
    assert [user_share(size) for size in (1, 2, 3, 20)] == [1, 1, 1, 10]
    settings.BH_USER_SHARE = 1.0
    assert user_share(2) == 2


def test_a_user_at_their_share_waits_while_another_users_call_goes_through() -> None:
    slots = FairSemaphore(2, share=1)
    assert slots.acquire(timeout=0, owner="bob") is True
    # bob's second call waits, though a slot is free: that slot is for somebody else.
    assert slots.acquire(timeout=0.05, owner="bob") is None
    assert slots.acquire(timeout=0, owner="alice") is True
    slots.release(owner="alice")
    slots.release(owner="bob")
    assert slots.acquire(timeout=0, owner="bob") is True  # his share is his again once his call is done


def test_waiters_over_their_share_let_later_callers_of_other_users_pass_and_keep_their_own_order() -> None:
    slots = FairSemaphore(2, share=1)
    slots.acquire(timeout=0, owner="bob")
    slots.acquire(timeout=0, owner="carol")
    served: list[str] = []

    def wait(owner: str, name: str) -> None:
        assert slots.acquire(timeout=10, owner=owner) is False
        served.append(name)

    threads = []
    for owner, name in (("bob", "bob 1"), ("bob", "bob 2"), ("alice", "alice")):
        threads.append(threading.Thread(target=wait, args=(owner, name)))
        threads[-1].start()
        _in_line(slots, len(threads))
    slots.release(owner="carol")  # carol's slot: bob is at his share, so it goes to alice, behind bob in line
    _served(served, 1)
    slots.release(owner="bob")
    _served(served, 2)
    slots.release(owner="bob")  # what bob 1 took
    _served(served, 3)
    assert served == ["alice", "bob 1", "bob 2"]  # bob's calls in the order they came
    for thread in threads:
        thread.join(timeout=10)


def test_a_call_that_gives_up_waiting_leaves_the_line_as_it_was() -> None:
    slots = FairSemaphore(1)
    slots.acquire(timeout=0, owner="bob")
    assert slots.acquire(timeout=0.01, owner="alice") is None
    assert not slots._waiting
    slots.release(owner="bob")
    assert slots.acquire(timeout=0, owner="alice") is True


# --- The bulkheads' share per user -----------------------------------------------------------------------------


@pytest.fixture
def held(tmp_path: Path) -> Iterator[Path]:
    from tests.tools import held_tools

    held_tools.declare()
    yield tmp_path
    held_tools.forget()
    # The calls made in threads gave their connections back to the process's pool (PostgreSQL): close them, or
    # they outlive the test session's database.
    getattr(connection, "close_pool", lambda: None)()


def test_a_user_over_their_share_of_analyses_is_told_busy_and_other_users_are_not(
    held: Path, alice: Any, bob: Any, call: Any, settings: Any, monkeypatch: Any
) -> None:
    settings.BH_MAX_CONCURRENT_ANALYSIS = 2  # a share of one each
    monkeypatch.setattr(bulkheads, "BULKHEAD_WAIT_SECONDS", 0.2)
    hog = held / "hog"
    with ThreadPoolExecutor(max_workers=2) as threads:
        try:
            holding = threads.submit(with_connections, call, bob, "test_hold", marker=str(hog))
            deadline = time.monotonic() + 10  # functional bound only
            while not Path(f"{hog}.started").exists():
                assert time.monotonic() < deadline
                time.sleep(0.01)
            with pytest.raises(Busy, match="You already have 1 analyses in progress, your share of this server's 2"):
                call(bob, "test_hold", marker=str(held / "bob-again"), seconds=0)
            # Before: bob's second call took the second slot, and a third user would have waited for it.
            assert call(alice, "test_hold", marker=str(held / "alice"), seconds=0)["status"] == "success"
        finally:
            Path(f"{hog}.release").touch()
        assert holding.result(timeout=10)["status"] == "success"
