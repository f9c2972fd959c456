from __future__ import annotations

import asyncio
import copy
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from music21 import environment
from oauth2_provider.models import AccessToken, Application, set_token_value

from apps.compliance import audit
from apps.core.redis import outages_forget
from apps.security import breakers, ratelimits, scopes
from apps.security.oauth_settings import oauth2_provider_settings
from apps.security.redis import redis_recovered
from apps.security.resources import api_resource, mcp_resource
from apps.security.services import token_epoch_bump
from apps.tools.invocation import Caller, invoke_tool
from apps.tools.registry import TOOLS, Tool, ToolArguments
from apps.tools.runner import runner_shutdown
from apps.tools.services.cache import parsed_scores
from tests.support import OwnRedis, free_port

pytest_plugins = ["tests.all_skipped"]


def pytest_configure() -> None:
    # music21 keeps a pickle of each corpus work it parses in its scratch directory and rewrites it in place: two
    # xdist workers parsing the same work for the first time (at collection, both at once) would read each other's
    # half-written file. Each worker keeps its own (the service's own parsing survives a torn one: test_import).
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        scratch = Path(tempfile.gettempdir()) / f"music21-tests-{worker}"
        scratch.mkdir(exist_ok=True)
        environment.Environment()["directoryScratch"] = str(scratch)


def pytest_collection_modifyitems(items: list[Any]) -> None:
    # Tools run in worker threads (the timeout guard), which have their own database connections: every test's
    # data must be committed to be seen, so every database test is transactional.
    for item in items:
        item.add_marker(pytest.mark.django_db(transaction=True))


@pytest.fixture(autouse=True, scope="session")
def _tool_threads_end_with_the_session() -> Iterator[None]:
    yield
    runner_shutdown()  # their database connections would otherwise keep the test database from being dropped


@pytest.fixture(autouse=True, scope="session")
def _own_cache_namespace(worker_id: str) -> Iterator[None]:
    """xdist workers share one Redis: each keeps its cache keys under its own prefix. Otherwise the token epoch
    that every test bumps (below) would forget the other worker's verified tokens in the middle of its test, and
    the workers would count each other's registrations and security events."""
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["KEY_PREFIX"] = f"m21-test-{worker_id}-{uuid.uuid4().hex[:8]}"
    with override_settings(CACHES=caches):
        yield


@pytest.fixture(autouse=True)
def _fresh_guards(settings: Any) -> None:
    """Each test starts with an empty parsed-score cache, its own guard namespace in Redis (xdist workers share
    one Redis), generous rate limits, and closed breakers."""
    parsed_scores.clear()
    settings.GUARD_NAMESPACE = f"m21-test-{uuid.uuid4().hex[:12]}"
    settings.RATE_LIMIT_PER_MINUTE = 100_000
    settings.RATE_LIMIT_BURST = 100_000
    # Tools run in threads of the test process, so that tests can change settings and declare test-only tools;
    # tests/tools/test_runner.py covers the worker processes.
    settings.TOOL_WORKER_PROCESSES = 0
    # Tests seal the audit trail when they check it; a sealing thread would race the database flush between tests.
    settings.AUDIT_SEAL_INTERVAL = 0
    audit._subjects.clear()
    token_epoch_bump()  # the database was flushed since: forget verified tokens and users
    ratelimits.rate_limits_reset()
    breakers.breakers_forget()


@pytest.fixture
def alice(db: None) -> Any:
    return get_user_model().objects.create_user("alice", "alice@example.com", "correct horse battery staple")


@pytest.fixture
def bob(db: None) -> Any:
    return get_user_model().objects.create_user("bob", "bob@example.com", "tr0ub4dor&3 but longer")


@pytest.fixture
def extra_tool() -> Iterator[Callable[..., str]]:
    """Declare a test-only tool, whose function takes the caller, for the duration of a test (the registry is
    otherwise fixed at start-up)."""
    added: list[str] = []

    def declare(name: str, function: Callable[[Caller], Any], *, group: str = "music_analysis") -> str:
        TOOLS[name] = Tool(
            name=name,
            description="test only",
            arguments=ToolArguments,
            scope=None,
            group=group,
            function=lambda caller, args: function(caller),
        )
        added.append(name)
        return name

    yield declare
    for name in added:
        TOOLS.pop(name, None)


ToolCall = Callable[..., dict[str, Any]]


@pytest.fixture
def call() -> ToolCall:
    """Call a tool through the one invocation path, as `user` with every scope unless `scopes` is given."""

    def _call(user: Any, tool: str, scopes: frozenset[str] | None = None, **arguments: Any) -> dict[str, Any]:
        caller = Caller.operator(user) if scopes is None else Caller(user=user, scopes=scopes)
        return invoke_tool(tool, arguments, caller=caller)

    return _call


@pytest.fixture
def chorale(alice: Any, call: ToolCall) -> dict[str, Any]:
    """alice's import of bach/bwv66.6 as 'chorale'."""
    return call(alice, "import_score", score_id="chorale", source="bach/bwv66.6", source_type="corpus")


@pytest.fixture
def live_site(transactional_db: None, settings: Any) -> Iterator[str]:
    """The whole site (Django and /mcp) served by uvicorn in a thread; yields its base URL, which is also
    PUBLIC_URL (and the OAuth issuer) for the duration of the test."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings.PUBLIC_URL = base_url
    settings.OAUTH2_PROVIDER = oauth2_provider_settings(base_url)

    from music21_platform.asgi import build_application

    server = uvicorn.Server(uvicorn.Config(build_application(), lifespan="on", log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.01)
    else:  # pragma: no cover - start-up failure
        raise RuntimeError("uvicorn did not start")
    yield base_url
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def token_for(transactional_db: None) -> Any:
    """An access token for `user` with `scope`, issued to a registered public client, as the flow would.

    `resource` is its audience (RFC 8707): "mcp" (the default, as MCP clients ask) for PUBLIC_URL/mcp, "api" for
    the HTTP APIs (PUBLIC_URL), None for a token issued without one, or any URL. music21:admin only for staff."""

    def issue(
        user: Any,
        scope: str = f"{scopes.READ} {scopes.WRITE}",
        *,
        expires_in: int = 3600,
        resource: str | None = "mcp",
    ) -> str:
        assert scopes.grantable(scope.split(), user=user) == scope.split(), f"{user} cannot be granted {scope}"
        audience = {"mcp": mcp_resource(), "api": api_resource(), None: None}.get(resource, resource)
        application = Application.objects.create(
            name=f"test client of {user.username}",
            client_type=Application.CLIENT_PUBLIC,
            authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
            redirect_uris="http://127.0.0.1:9/callback",
        )
        raw = secrets.token_urlsafe(32)
        token = AccessToken(
            user=user,
            application=application,
            scope=scope,
            expires=timezone.now() + timedelta(seconds=expires_in),
            resource=[audience] if audience else [],
        )
        set_token_value(token, raw)  # stored as a checksum only, as the server stores the tokens it issues
        token.save()
        return raw

    return issue


@pytest.fixture(scope="session")
def celery_worker(
    django_db_setup: None, worker_id: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int | None]:
    """A real Celery worker process when a broker is configured; without one, tasks run in process.

    The worker uses this test session's database and its own queue (xdist sessions share one Redis), and serves
    its metrics (multiprocess mode) on the port this fixture yields."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        yield None
        return
    metrics_port = free_port()
    metrics_dir = tmp_path_factory.mktemp("worker-metrics")

    from music21_platform.celery import app

    queue = f"test-{worker_id}-{uuid.uuid4().hex[:8]}"
    app.conf.task_default_queue = queue
    database_url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/" + connection.settings_dict["NAME"]
    worker = subprocess.Popen(  # noqa: S603 - our own interpreter
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "music21_platform",
            "worker",
            "--pool=solo",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            f"--queues={queue}",
            f"--hostname={queue}@localhost",
        ],
        cwd=settings.BASE_DIR,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "music21_platform.settings",
            "DATABASE_URL": database_url,
            "CELERY_QUEUE": queue,
            "AUDIT_SEAL_INTERVAL": "0",
            "WORKER_METRICS_PORT": str(metrics_port),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        },
    )

    try:
        for _ in range(120):
            if app.control.ping(destination=[f"{queue}@localhost"], timeout=0.5):
                break
            time.sleep(0.5)
        else:
            pytest.fail("the Celery worker did not start")
        yield metrics_port
    finally:
        worker.terminate()
        worker.wait(timeout=30)


@pytest.fixture
def own_redis(settings: Any) -> Iterator[OwnRedis]:
    """The app's cache and guards pointed at a redis-server of the test's own (fault tests freeze or kill it); always
    killed at the end, and the outage it leaves forgotten."""
    server = OwnRedis()
    try:
        backends = copy.deepcopy(settings.CACHES)
        backends["default"] = {
            "BACKEND": "apps.core.cache.RedisCache",
            "LOCATION": server.url,
            "KEY_PREFIX": backends["default"].get("KEY_PREFIX", "m21"),
        }
        settings.CACHES = backends
        settings.REDIS_URL = server.url
        breakers.breakers_forget()  # breakers keep the Redis client they were built with
        yield server
    finally:
        server.kill()
        breakers.breakers_forget()
        redis_recovered()
        outages_forget()
