"""A 2025-era client's `notifications/cancelled` stops the call it names in whichever serving process answers it:
two processes of one deployment tell each other through Redis (a redis-server of each test's own)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx2 as httpx
import pytest

from apps.core.redis import outages_forget
from apps.mcp_bridge.cancellation import Cancellations
from apps.security import scopes
from tests.mcp_bridge.conftest import corpus_job_cancelled_by_notification
from tests.support import OwnRedis, eventually, free_port, subprocess_database_url

CHANNEL = "test:mcp:cancelled"


@pytest.fixture
def redis_server() -> Iterator[OwnRedis]:
    server = OwnRedis()
    try:
        yield server
    finally:
        server.kill()
        outages_forget()


def _cancelled_within(seconds: float, here: Cancellations, there: Cancellations, token: str, request_id: Any) -> bool:
    """Whether a call registered in `here` under `token` and `request_id` is stopped within `seconds` once `there`
    is asked to cancel `request_id` of `token`."""

    async def scenario() -> bool:
        async with here.listening(), there.listening():
            with anyio.CancelScope() as call, here.registered("alice's token", 5, call):
                await there.cancel(token, request_id)
                await anyio.sleep(seconds)
            return call.cancelled_caught

    return anyio.run(scenario)


def test_a_cancellation_reaches_the_process_answering_the_call(redis_server: OwnRedis) -> None:
    here, there = Cancellations(redis_server.url, CHANNEL), Cancellations(redis_server.url, CHANNEL)
    assert _cancelled_within(10, here, there, "alice's token", 5)


def test_another_token_or_another_id_cancels_nothing_elsewhere(redis_server: OwnRedis) -> None:
    for token, request_id in (("bob's token", 5), ("alice's token", "5"), ("alice's token", 6)):
        here, there = Cancellations(redis_server.url, CHANNEL), Cancellations(redis_server.url, CHANNEL)
        assert not _cancelled_within(0.5, here, there, token, request_id)


def test_without_redis_a_cancellation_is_not_relayed_and_costs_no_wait(redis_server: OwnRedis) -> None:
    url = redis_server.url
    redis_server.kill()
    here, there = Cancellations(url, CHANNEL), Cancellations(url, CHANNEL)
    started = time.monotonic()
    assert not _cancelled_within(0.1, here, there, "alice's token", 5)
    # both started without their subscription (a moment each), and the notification did not wait on Redis
    assert time.monotonic() - started < 5


@pytest.fixture
def second_server(live_site: str, own_redis: OwnRedis, settings: Any) -> Iterator[str]:
    """Another serving process of the same deployment as `live_site` (a second replica behind the same public URL):
    the same database, Redis and guard namespace. Yields its own base URL."""
    port = free_port()
    server = subprocess.Popen(  # noqa: S603 - our own interpreter
        [sys.executable, "-m", "uvicorn", "music21_platform.asgi:application", "--port", str(port)],
        cwd=settings.BASE_DIR,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "music21_platform.settings",
            "DATABASE_URL": subprocess_database_url(),
            "REDIS_URL": own_redis.url,
            "GUARD_NAMESPACE": settings.GUARD_NAMESPACE,
            "PUBLIC_URL": live_site,
            "AUDIT_SEAL_INTERVAL": "0",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        assert eventually(lambda: _serving(base), seconds=60), "the second server did not start"
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def _serving(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_notification_reaching_another_process_stops_the_call(
    own_redis: OwnRedis,
    live_site: str,
    second_server: str,
    alice: Any,
    bob: Any,
    token_for: Any,
    celery_worker: None,
) -> None:
    # Two replicas behind one public URL: the client's call is answered by one, its notifications/cancelled reaches
    # the other. That one used to find no such call and drop it: the job ran on to its end.
    from apps.compliance.models import AuditEvent

    alice_token, bob_token = token_for(alice, scopes.READ), token_for(bob, scopes.READ)
    messages = corpus_job_cancelled_by_notification(live_site, alice_token, bob_token, notified=second_server)
    assert len(messages) >= 3
    assert [message.get("method") for message in messages] == ["notifications/progress"] * len(messages)
    assert messages[-1]["params"]["progress"] < 400  # stopped, and the cancelled request is not answered
    assert eventually(lambda: AuditEvent.objects.filter(action="tool.analyze_corpus").exists(), seconds=60)
    assert AuditEvent.objects.get(action="tool.analyze_corpus").outcome == "cancelled"
