"""The guards of the invocation path: rate limits, bulkheads, timeouts, circuit breakers, security events, blocks."""

from __future__ import annotations

import base64
import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import OperationalError
from django.utils import timezone
from prometheus_client import REGISTRY

from apps.compliance.models import AuditEvent
from apps.core.errors import (
    Blocked,
    Busy,
    CircuitOpen,
    InsufficientScope,
    InvalidArguments,
    NotFound,
    RateLimited,
    RejectedInput,
    ServiceUnavailable,
    TimedOut,
)
from apps.security import breakers, bulkheads
from apps.security.models import Block, SecurityEvent
from apps.tools.invocation import Caller, invoke_tool
from tests.support import free_port, manage_py, subprocess_database_url

ENTITY_BOMB = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
    "<score-partwise><part-list/>&lol2;</score-partwise>"
)


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _as(
    user: Any, *, ip: str = "10.0.0.1", client_id: str | None = "client-1", scopes: frozenset[str] | None = None
) -> Caller:
    return Caller(user=user, scopes=scopes or frozenset({"music21:read", "music21:write"}), ip=ip, client_id=client_id)


# --- Rate limits ------------------------------------------------------------------------------------------------


def test_a_burst_over_the_limit_is_refused_with_the_retry_time_then_served_again(alice: Any, settings: Any) -> None:
    settings.RATE_LIMIT_PER_MINUTE = 60  # one a second
    settings.RATE_LIMIT_BURST = 2
    before = _metric("music21_blocked_requests_total", reason="rate_limit")
    invoke_tool("list_scores", {}, caller=_as(alice))
    invoke_tool("list_scores", {}, caller=_as(alice))
    with pytest.raises(RateLimited) as refused:
        invoke_tool("list_scores", {}, caller=_as(alice))
    assert 0 < refused.value.retry_after <= 1.0
    assert "retry in" in str(refused.value)
    assert _metric("music21_blocked_requests_total", reason="rate_limit") == before + 1
    assert SecurityEvent.objects.filter(kind="rate_limit", user=alice).count() == 1
    time.sleep(refused.value.retry_after + 0.05)
    assert invoke_tool("list_scores", {}, caller=_as(alice))["status"] == "success"


def test_limits_are_per_group_and_per_user(alice: Any, bob: Any, settings: Any) -> None:
    settings.RATE_LIMIT_PER_MINUTE = 1
    settings.RATE_LIMIT_BURST = 1
    invoke_tool("list_scores", {}, caller=_as(alice))
    with pytest.raises(RateLimited):
        invoke_tool("list_scores", {}, caller=_as(alice, client_id="client-2"))
    invoke_tool("list_scores", {}, caller=_as(bob, client_id="client-3"))  # bob has his own bucket
    invoke_tool("health_check", {}, caller=_as(alice, client_id="client-4"))  # another group, another bucket


def test_one_users_calls_through_a_shared_client_leave_its_other_users_their_whole_limit(
    alice: Any, bob: Any, settings: Any
) -> None:
    # A client registered once for a whole product (or named by its metadata document) serves all its users: alice
    # spending her limit through it, and going on calling once refused, costs bob nothing.
    settings.RATE_LIMIT_PER_MINUTE = 1
    settings.RATE_LIMIT_BURST = 2
    for _ in range(2):
        invoke_tool("list_scores", {}, caller=_as(alice, client_id="shared-app"))
    for _ in range(5):
        with pytest.raises(RateLimited):
            invoke_tool("list_scores", {}, caller=_as(alice, client_id="shared-app"))
    for _ in range(2):
        assert invoke_tool("list_scores", {}, caller=_as(bob, client_id="shared-app"))["status"] == "success"


def test_calls_refused_for_their_scope_or_arguments_take_no_token(alice: Any, settings: Any) -> None:
    settings.RATE_LIMIT_PER_MINUTE = 1
    settings.RATE_LIMIT_BURST = 1
    reader = _as(alice, scopes=frozenset({"music21:read"}))
    for _ in range(3):
        with pytest.raises(InsufficientScope):
            invoke_tool("delete_score", {"score_id": "x"}, caller=reader)
        with pytest.raises(InvalidArguments, match="limit"):
            invoke_tool("list_scores", {"limit": "many"}, caller=reader)
    assert invoke_tool("list_scores", {}, caller=reader)["status"] == "success"  # the group's one token was left
    with pytest.raises(RateLimited):
        invoke_tool("list_scores", {}, caller=reader)


def test_a_blocked_user_is_told_so_whatever_else_is_wrong_with_its_call(alice: Any, bob: Any) -> None:
    Block.objects.create(target="user", value=str(bob.pk), reason="test", until=timezone.now() + timedelta(minutes=5))
    blocked = _as(bob, scopes=frozenset({"music21:read"}))
    for name, arguments in (("delete_score", {"score_id": "x"}), ("list_scores", {"limit": "many"})):
        with pytest.raises(Blocked, match="user is blocked until"):
            invoke_tool(name, arguments, caller=blocked)
    assert invoke_tool("list_scores", {}, caller=_as(alice))["status"] == "success"  # same address and client


def test_a_block_placed_here_applies_at_once_even_when_redis_does_not_take_the_epochs_bump(
    alice: Any, monkeypatch: Any
) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    from apps.security import services

    assert invoke_tool("list_scores", {}, caller=_as(alice))["status"] == "success"  # remembered: not blocked

    def refused(*args: Any, **kwargs: Any) -> None:
        raise RedisConnectionError("Redis refused the write")

    monkeypatch.setattr(services, "publish", refused)  # the bump cannot reach Redis, nor the other processes
    Block.objects.create(target="user", value=str(alice.pk), reason="test", until=timezone.now() + timedelta(minutes=5))
    with pytest.raises(Blocked, match="user is blocked until"):
        invoke_tool("list_scores", {}, caller=_as(alice))


def test_a_client_an_administrator_blocked_is_refused_and_an_address_block_refuses_no_signed_in_call(
    alice: Any,
) -> None:
    until = timezone.now() + timedelta(minutes=5)
    Block.objects.create(target="client", value="client-9", reason="an administrator's decision", until=until)
    Block.objects.create(target="ip", value="10.9.9.9", reason="failed sign-ins", until=until)
    with pytest.raises(Blocked, match=r"OAuth client is blocked until .* by an administrator"):
        invoke_tool("list_scores", {}, caller=_as(alice, client_id="client-9"))
    assert invoke_tool("list_scores", {}, caller=_as(alice, ip="10.9.9.9"))["status"] == "success"


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="sharing a limit across processes needs Redis")
def test_two_processes_share_one_rate_limit(alice: Any, settings: Any) -> None:
    settings.RATE_LIMIT_PER_MINUTE = 1
    settings.RATE_LIMIT_BURST = 3
    script = (
        "import django; django.setup()\n"
        "from apps.security.ratelimits import bucket_of, token_take\n"
        f"bucket = bucket_of(group='score_import', user_id={alice.pk})\n"
        "for _ in range(3): assert token_take(bucket) == 0\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "music21_platform.settings",
        "GUARD_NAMESPACE": settings.GUARD_NAMESPACE,
        "RATE_LIMIT_PER_MINUTE": "1",
        "RATE_LIMIT_BURST": "3",
    }
    subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", script], env=env, cwd=django_settings.BASE_DIR, check=True, timeout=60
    )
    with pytest.raises(RateLimited):  # the other process took the whole burst
        invoke_tool("list_scores", {}, caller=_as(alice, client_id=None))


# --- Bulkheads and timeouts -------------------------------------------------------------------------------------


def test_analyses_beyond_the_bulkhead_are_told_the_server_is_busy(
    alice: Any, settings: Any, extra_tool: Any, monkeypatch: Any
) -> None:
    settings.BH_MAX_CONCURRENT_ANALYSIS = 1
    monkeypatch.setattr(bulkheads, "BULKHEAD_WAIT_SECONDS", 0.2)
    release = threading.Event()
    extra_tool("test_hold", lambda caller: release.wait(10) and {})
    with ThreadPoolExecutor(max_workers=1) as pool:
        holding = pool.submit(invoke_tool, "test_hold", {}, caller=_as(alice))
        time.sleep(0.2)
        with pytest.raises(Busy, match="busy"):
            invoke_tool("test_hold", {}, caller=_as(alice))
        invoke_tool("list_scores", {}, caller=_as(alice))  # another compartment is not affected
        release.set()
        assert holding.result(timeout=10) == {"status": "success"}


def test_a_call_that_arrives_as_a_slot_frees_queues_behind_the_calls_already_waiting(settings: Any) -> None:
    settings.MAX_CONCURRENT_REQUESTS = 1
    admitted: list[str] = []

    def enter(name: str) -> None:
        with bulkheads.bulkhead("score_import"):
            admitted.append(name)

    with bulkheads.bulkhead("score_import"):  # the only slot is taken
        waiting = threading.Thread(target=enter, args=("waiting since before",))
        waiting.start()
        compartment = bulkheads._compartment("all", 1)
        deadline = time.monotonic() + 10
        while not compartment._waiting and time.monotonic() < deadline:
            time.sleep(0.01)
    # The slot has just been freed; with threading's semaphore this thread, still running, took it first.
    enter("arrived as the slot freed")
    waiting.join(timeout=10)
    assert admitted == ["waiting since before", "arrived as the slot freed"]


def test_a_call_past_the_timeout_is_answered_on_time_while_others_are_served(
    alice: Any, bob: Any, settings: Any, extra_tool: Any
) -> None:
    settings.REQUEST_TIMEOUT = 0.5
    work_ended = threading.Event()
    extra_tool("test_sleep", lambda caller: time.sleep(3) or work_ended.set() or {})
    with ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(invoke_tool, "test_sleep", {}, caller=_as(alice))
        assert invoke_tool("list_scores", {}, caller=_as(bob))["status"] == "success"
        with pytest.raises(TimedOut, match=r"0.5 s"):
            slow.result(timeout=5)
        assert not work_ended.is_set()  # answered at the limit, not when the work ended
    assert _metric("mcp_requests_total", tool="test_sleep", status="timeout") >= 1


def test_a_call_that_waited_past_its_limit_before_it_was_taken_up_does_not_run(
    alice: Any, settings: Any, extra_tool: Any
) -> None:
    settings.REQUEST_TIMEOUT = 0.5
    ran = threading.Event()
    extra_tool("test_mark", lambda caller: ran.set() or {})
    waited_for_a_thread = dataclasses.replace(_as(alice), arrived=time.monotonic() - 0.6)
    with pytest.raises(TimedOut, match=r"waited 0\.\d s for the server to take it up"):
        invoke_tool("test_mark", {}, caller=waited_for_a_thread)
    assert not ran.is_set()
    assert invoke_tool("test_mark", {}, caller=_as(alice)) == {"status": "success"}  # one on time runs


def _database_down(caller: Any) -> Any:
    raise OperationalError("could not connect to server: Connection refused")


# --- Circuit breakers -------------------------------------------------------------------------------------------


def _export_dependency(extra_tool: Any, name: str) -> dict[str, bool]:
    """A test tool of the export group whose dependency (the database) fails while the returned flag's "on" is set."""
    failing = {"on": True}

    def call(caller: Any) -> dict[str, Any]:
        if failing["on"]:
            raise OperationalError("could not connect to server: Connection refused")
        return {"ok": True}

    extra_tool(name, call, group="export")
    return failing


def test_repeated_failures_open_the_breaker_and_a_trial_call_closes_it(
    alice: Any, settings: Any, extra_tool: Any
) -> None:
    settings.CB_FAILURE_THRESHOLD = 2
    settings.CB_RECOVERY_TIMEOUT = 1.0
    failing = _export_dependency(extra_tool, "test_flaky")
    changes = _metric("music21_circuit_breaker_state_changes_total", circuit_name="export")
    for _ in range(2):
        with pytest.raises(ServiceUnavailable):
            invoke_tool("test_flaky", {}, caller=_as(alice))
    failing["on"] = False
    with pytest.raises(CircuitOpen, match="export tools"):
        invoke_tool("test_flaky", {}, caller=_as(alice))
    assert breakers.breaker_states()["export"]["state"] == "open"
    invoke_tool("list_scores", {}, caller=_as(alice))  # other groups keep working
    time.sleep(1.1)
    assert invoke_tool("test_flaky", {}, caller=_as(alice))["ok"] is True
    assert breakers.breaker_states()["export"]["state"] == "closed"
    assert _metric("music21_circuit_breaker_state_changes_total", circuit_name="export") >= changes + 2


def test_the_trail_records_a_breaker_opening_and_closing_not_each_failed_trial(
    alice: Any, settings: Any, extra_tool: Any
) -> None:
    settings.CB_FAILURE_THRESHOLD = 1
    settings.CB_RECOVERY_TIMEOUT = 0.2
    failing = _export_dependency(extra_tool, "test_dependency")
    for _ in range(3):  # the failure that opens the breaker, then two trial calls that fail
        with pytest.raises(ServiceUnavailable):
            invoke_tool("test_dependency", {}, caller=_as(alice))
        time.sleep(0.3)
    failing["on"] = False
    assert invoke_tool("test_dependency", {}, caller=_as(alice))["ok"] is True

    recorded = AuditEvent.objects.filter(action="breaker.state", target="export").order_by("id")
    assert list(recorded.values_list("outcome", flat=True)) == ["open", "closed"]


def test_calls_of_one_group_run_side_by_side_in_one_process(alice: Any, extra_tool: Any) -> None:
    # Each call waits until the other has started: if the breaker let one call through at a time, the barrier
    # would break instead.
    meeting = threading.Barrier(2, timeout=10)
    extra_tool("test_meet", lambda caller: {"met": meeting.wait() in (0, 1)}, group="music_analysis")
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: invoke_tool("test_meet", {}, caller=_as(alice)), range(2)))
    assert [r["met"] for r in results] == [True, True]


def test_a_half_open_breaker_lets_one_trial_call_through_at_a_time(alice: Any, settings: Any, extra_tool: Any) -> None:
    settings.CB_FAILURE_THRESHOLD = 1
    settings.CB_RECOVERY_TIMEOUT = 0.2
    started, release = threading.Event(), threading.Event()
    mode = {"fail": True}

    def trial(caller: Any) -> dict[str, Any]:
        if mode["fail"]:
            raise OperationalError("could not connect to server: Connection refused")
        started.set()
        release.wait(10)
        return {"ok": True}

    extra_tool("test_trial", trial, group="export")
    with pytest.raises(ServiceUnavailable):
        invoke_tool("test_trial", {}, caller=_as(alice))
    mode["fail"] = False
    time.sleep(0.3)  # past the recovery timeout: the next call is the trial
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(invoke_tool, "test_trial", {}, caller=_as(alice))
        assert started.wait(10)
        with pytest.raises(CircuitOpen):  # a second call while the trial runs is refused
            invoke_tool("test_trial", {}, caller=_as(alice))
        release.set()
        assert first.result(10)["ok"] is True
    assert breakers.breaker_states()["export"]["state"] == "closed"
    assert invoke_tool("test_trial", {}, caller=_as(alice))["ok"] is True


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="sharing a breaker across processes needs Redis")
def test_two_processes_share_one_breaker(alice: Any, settings: Any, extra_tool: Any) -> None:
    settings.CB_FAILURE_THRESHOLD = 2
    settings.CB_RECOVERY_TIMEOUT = 300
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "music21_platform.settings",
        "GUARD_NAMESPACE": settings.GUARD_NAMESPACE,
        "CB_FAILURE_THRESHOLD": "2",
        "CB_RECOVERY_TIMEOUT": "300",
    }
    failing_elsewhere = (
        "import django; django.setup()\n"
        "from apps.security.breakers import breaker_guarding\n"
        "from redis.exceptions import ConnectionError\n"
        "for _ in range(2):\n"
        "    try:\n"
        "        with breaker_guarding('composition'): raise ConnectionError('Redis is gone')\n"
        "    except ConnectionError: pass\n"
    )
    subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", failing_elsewhere], env=env, cwd=django_settings.BASE_DIR, check=True, timeout=60
    )
    extra_tool("test_fine", lambda caller: {"ok": True}, group="composition")
    with pytest.raises(CircuitOpen):  # opened by the other process
        invoke_tool("test_fine", {}, caller=_as(alice))
    subprocess.run(  # an administrator resets it from another shell
        [sys.executable, "manage.py", "circuit_breakers", "--reset", "composition"],
        env=env,
        cwd=django_settings.BASE_DIR,
        check=True,
        timeout=60,
        capture_output=True,
    )
    assert invoke_tool("test_fine", {}, caller=_as(alice))["ok"] is True


def test_resetting_breakers_while_redis_is_unreachable_says_so_and_fails(db: None) -> None:
    result = manage_py(
        "circuit_breakers",
        "--reset",
        "all",
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "music21_platform.settings",
            "DATABASE_URL": subprocess_database_url(),
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        },
    )

    assert result.returncode == 1
    assert "is unreachable: the shared breakers could not be reset" in result.stderr
    assert "reset: all" not in result.stdout


def test_the_breakers_command_without_redis_points_to_the_admin(db: None) -> None:
    environment = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL")}
    result = manage_py(
        "circuit_breakers", "--reset", "all", env={**environment, "DJANGO_SETTINGS_MODULE": "music21_platform.settings"}
    )

    assert result.returncode == 1
    assert "Without REDIS_URL each serving process keeps its own breakers" in result.stderr
    assert "/admin/security/breakers/" in result.stderr
    assert "reset: all" not in result.stdout


def test_bad_input_does_not_open_a_breaker(alice: Any, settings: Any, tmp_path: Any) -> None:
    settings.SCORE_IMPORT_ROOT = tmp_path
    settings.CB_FAILURE_THRESHOLD = 1
    for _ in range(3):
        with pytest.raises(RejectedInput):
            invoke_tool(
                "import_score",
                {"score_id": "x", "source": "../../etc/passwd", "source_type": "file"},
                caller=_as(alice, ip="10.9.9.9"),
            )
    assert breakers.breaker_states()["score_import"]["state"] == "closed"


def test_an_administrator_can_reset_a_breaker(alice: Any, settings: Any, extra_tool: Any) -> None:
    settings.CB_FAILURE_THRESHOLD = 1
    settings.CB_RECOVERY_TIMEOUT = 300
    extra_tool("test_broken", _database_down, group="composition")
    with pytest.raises(ServiceUnavailable):
        invoke_tool("test_broken", {}, caller=_as(alice))
    with pytest.raises(CircuitOpen):
        invoke_tool("test_broken", {}, caller=_as(alice))
    breakers.breaker_reset("composition")
    with pytest.raises(ServiceUnavailable):  # reaches the tool again
        invoke_tool("test_broken", {}, caller=_as(alice))


# --- Security events and blocks ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "input_kind"),
    [
        ({"source": ENTITY_BOMB, "source_type": "musicxml"}, "xml_entities"),
        (
            {
                "source": "<score-partwise>" + "<a>" * 100 + "</a>" * 100 + "</score-partwise>",
                "source_type": "musicxml",
            },
            "xml_depth",
        ),
        ({"source": "../../etc/passwd", "source_type": "file"}, "path_traversal"),
        ({"source": "/etc/passwd", "source_type": "abc"}, "path_traversal"),
        ({"source": "a" * (5 * 1024 * 1024 + 1), "source_type": "abc"}, "oversize"),
        ({"source": base64.b64encode(b"MThd" + b"\0" * 10).decode() + "!!", "source_type": "midi"}, None),
    ],
)
def test_hostile_input_is_recorded_and_counted(
    alice: Any, settings: Any, tmp_path: Any, arguments: dict[str, Any], input_kind: str | None
) -> None:
    settings.SCORE_IMPORT_ROOT = tmp_path
    before = _metric("music21_security_violations_total", kind=input_kind or "none")
    with pytest.raises(Exception):  # noqa: B017 - each case has its own error; the event is what is checked
        invoke_tool("import_score", {"score_id": "x", **arguments}, caller=_as(alice))
    events = SecurityEvent.objects.filter(kind="hostile_input", user=alice)
    if input_kind is None:  # invalid base64 is a mistake, not an attack
        assert not events.exists()
        return
    event = events.get()
    assert event.detail["input_kind"] == input_kind
    assert (event.ip, event.client_id) == ("10.0.0.1", "client-1")
    assert _metric("music21_security_violations_total", kind=input_kind) == before + 1
    assert not alice.scores.exists()


@pytest.mark.parametrize("pattern", ["../../etc/*", "/etc/pass*", "bach/../../../etc/*"])
def test_a_corpus_pattern_reaching_out_of_the_corpus_is_hostile_input(alice: Any, pattern: str) -> None:
    """analyze_corpus matches its pattern against the corpus's own list of works and opens nothing it names; a
    pattern climbing out of the corpus is refused as import_score refuses a path, and recorded."""
    with pytest.raises(RejectedInput, match="corpus path pattern") as refused:
        invoke_tool("analyze_corpus", {"path_pattern": pattern}, caller=_as(alice))
    assert refused.value.kind == "path_traversal"
    event = SecurityEvent.objects.get(kind="hostile_input", user=alice)
    assert event.detail["input_kind"] == "path_traversal"
    assert event.detail["tool"] == "analyze_corpus"


def test_scope_violations_and_cross_tenant_attempts_are_recorded(alice: Any, bob: Any, call: Any) -> None:
    call(alice, "import_score", score_id="secret", source="bach/bwv66.6")
    with pytest.raises(Exception, match=r"not_found|No score"):
        invoke_tool("score_info", {"score_id": "secret"}, caller=_as(bob))
    with pytest.raises(Exception, match="music21:write"):
        invoke_tool("delete_score", {"score_id": "secret"}, caller=_as(bob, scopes=frozenset({"music21:read"})))
    kinds = set(SecurityEvent.objects.filter(user=bob).values_list("kind", flat=True))
    assert kinds == {"cross_tenant", "scope_violation"}
    with pytest.raises(Exception, match="No score"):
        invoke_tool("score_info", {"score_id": "never-existed"}, caller=_as(bob))
    assert SecurityEvent.objects.filter(user=bob, kind="cross_tenant").count() == 1  # a plain miss is no attack


def test_asking_often_for_a_score_id_that_only_someone_else_has_blocks_nobody(
    alice: Any, bob: Any, call: Any, settings: Any
) -> None:
    settings.SECURITY_BLOCK_THRESHOLD = 3
    call(alice, "import_score", score_id="score1", source="bach/bwv66.6")
    for _ in range(5):  # bob never had a "score1"; he keeps asking for one
        with pytest.raises(NotFound):
            invoke_tool("score_info", {"score_id": "score1"}, caller=_as(bob))
    assert SecurityEvent.objects.filter(user=bob, kind="cross_tenant").count() == 5  # each seen by administrators
    assert not Block.objects.exists()
    assert invoke_tool("list_scores", {}, caller=_as(bob))["status"] == "success"


def test_a_user_with_too_many_violations_is_blocked(alice: Any, bob: Any, settings: Any) -> None:
    settings.SECURITY_BLOCK_THRESHOLD = 3
    settings.LOCKOUT_DURATION = 60
    hostile = _as(alice, ip="10.6.6.6", scopes=frozenset({"music21:read"}))
    for _ in range(3):
        with pytest.raises(Exception, match="music21:write"):
            invoke_tool("delete_score", {"score_id": "x"}, caller=hostile)
    with pytest.raises(Blocked, match="blocked until"):
        invoke_tool("list_scores", {}, caller=hostile)
    block = Block.objects.get()
    assert (block.target, block.value) == ("user", str(alice.pk))
    assert SecurityEvent.objects.filter(kind="blocked", user=alice).exists()
    assert invoke_tool("list_scores", {}, caller=_as(bob, ip="10.6.6.6"))["status"] == "success"
    from apps.security.events import block_lift

    block_lift(block=block)
    assert invoke_tool("list_scores", {}, caller=hostile)["status"] == "success"


# --- Degradation ------------------------------------------------------------------------------------------------


def _start_redis(port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(  # noqa: S603 - the redis-server of this machine
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],  # noqa: S607
        stdout=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return server
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server program")
def test_guards_keep_serving_while_redis_is_down_and_share_again_when_it_returns(
    alice: Any, settings: Any, monkeypatch: Any
) -> None:
    # A private Redis on another port, so that stopping it does not disturb anything else.
    from apps.security import redis as guard_redis

    port = free_port()
    server = _start_redis(port)
    monkeypatch.setattr(guard_redis, "RETRY_AFTER_FAILURE", 0.5)
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    breakers.breakers_forget()
    try:
        assert invoke_tool("list_scores", {}, caller=_as(alice))["status"] == "success"
        assert not guard_redis.redis_degraded()
        server.terminate()
        server.wait(timeout=10)
        for _ in range(5):
            started = time.perf_counter()
            assert invoke_tool("list_scores", {}, caller=_as(alice))["status"] == "success"
            assert time.perf_counter() - started < 1.0  # no call hangs on the dead Redis
        assert guard_redis.redis_degraded()
        server = _start_redis(port)
        time.sleep(0.6)
        assert invoke_tool("list_scores", {}, caller=_as(alice))["status"] == "success"
        assert not guard_redis.redis_degraded()
    finally:
        server.terminate()
        server.wait(timeout=10)
        guard_redis.redis_recovered()


# The shared PostgreSQL cannot be stopped under other test runs, so a dropped connection is simulated here by
# making the score query raise the error Django raises when the server goes away.


def test_a_transient_database_error_on_a_read_is_retried(chorale: Any, alice: Any) -> None:
    from apps.tools.selectors import retry_transient_reads

    failures = iter([OperationalError("server closed the connection unexpectedly")] * 2)
    reads: list[str] = []

    @retry_transient_reads
    def read_through_a_restart(score_id: str) -> str:  # the policy every score read is wrapped in
        reads.append(score_id)
        for failure in failures:
            raise failure
        return score_id

    assert read_through_a_restart("chorale") == "chorale"
    assert reads == ["chorale"] * 3  # two failures, then the third try answers


def test_with_the_database_down_calls_fail_fast_with_a_clear_error(chorale: Any, alice: Any, monkeypatch: Any) -> None:
    from django.db.models.query import RawQuerySet

    from apps.core.errors import ServiceUnavailable

    tries: list[Any] = []

    def down(queryset: Any) -> Any:  # score_get's query, as the driver fails it
        tries.append(queryset.params)
        raise OperationalError("could not connect to server: Connection refused")

    monkeypatch.setattr(RawQuerySet, "__iter__", down)
    with pytest.raises(ServiceUnavailable, match="database is unavailable; nothing was changed"):
        invoke_tool("score_info", {"score_id": "chorale"}, caller=_as(alice))
    assert len(tries) == 3  # a bounded number of tries (the last two after short backoffs), then the clear error


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="the shared storage lives in Redis")
def test_a_breakers_shared_state_reads_its_state_and_failures_together(settings: Any) -> None:
    from datetime import UTC, datetime

    from apps.security.breakers import SharedStorage
    from apps.security.redis import shared_redis

    storage = SharedStorage(shared_redis(), f"{settings.GUARD_NAMESPACE}:cb:test")
    assert storage.reading() == ("closed", 0)  # nothing stored yet: closed, as pybreaker starts
    storage.increment_counter()
    storage.increment_counter()
    storage.state = "open"
    opened = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)
    storage.opened_at = opened
    again = SharedStorage(shared_redis(), f"{settings.GUARD_NAMESPACE}:cb:test")  # another process's view
    assert again.reading() == ("open", 2)
    assert again.opened_at == opened
    again.reset_counter()
    assert storage.counter == 0
