"""What operators see: /metrics counts what happened (in one process and across two uvicorn workers), access to
it is limited, a tool call is one span tree, logs are JSON lines about the call, /server_stats answers staff."""

from __future__ import annotations

import ast
import json
import logging
import os
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path
from typing import Any

import httpx2 as httpx
import psutil
import pytest
from django.conf import settings
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from apps.core.errors import NotFound
from apps.tools.invocation import Caller, invoke_tool
from tests.support import OwnRedis, free_port, signed_in, staff_user, subprocess_database_url

SPEC_METRICS = [
    "mcp_requests_total",
    "mcp_request_duration_seconds",
    "mcp_concurrent_requests",
    "music21_analysis_duration_seconds",
    "music21_files_processed_total",
    "music21_analysis_queue_size",
    "music21_auth_attempts_total",
    "music21_security_violations_total",
    "music21_blocked_requests_total",
    "music21_memory_usage_bytes",
    "music21_cpu_usage_percent",
    "music21_open_file_descriptors",
    "music21_circuit_breaker_state_changes_total",
]


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _scrape(**headers: str) -> dict[Any, float]:
    response = Client().get("/metrics", REMOTE_ADDR="127.0.0.1", headers=headers)
    assert response.status_code == 200
    return _samples(response.content.decode())


def test_metrics_count_a_known_sequence_of_calls(alice: Any, call: Any, settings: Any) -> None:
    before = _scrape()
    call(alice, "import_score", score_id="tune", source="tinyNotation: 4/4 c4 d e f", source_type="tinynotation")
    call(alice, "score_info", score_id="tune")
    call(alice, "score_info", score_id="tune")
    with pytest.raises(NotFound):
        call(alice, "score_info", score_id="missing")
    after = _scrape()

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("mcp_requests_total", tool="score_info", status="success") == 2
    assert delta("mcp_requests_total", tool="score_info", status="not_found") == 1
    assert delta("mcp_requests_total", tool="import_score", status="success") == 1
    assert delta("mcp_request_duration_seconds_count", tool="score_info") == 3
    assert delta("music21_analysis_duration_seconds_count", tool="score_info") == 3
    assert delta("music21_files_processed_total") == 1
    assert _value(after, "music21_memory_usage_bytes", type="rss") > 10_000_000
    assert _value(after, "music21_open_file_descriptors") > 0
    names = {name for name, _ in after}
    for metric in SPEC_METRICS:
        assert any(name == metric or name.startswith(metric + "_") for name in names), metric


def test_metrics_are_for_allowed_networks_or_the_token(db: None, settings: Any) -> None:
    settings.METRICS_TOKEN = "scrape-secret-123"
    assert Client().get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403
    wrong = Client().get("/metrics", REMOTE_ADDR="203.0.113.9", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    right = Client().get("/metrics", REMOTE_ADDR="203.0.113.9", headers={"Authorization": "Bearer scrape-secret-123"})
    assert right.status_code == 200 and b"mcp_requests_total" in right.content


def _mcp_call(base: str, token: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(
        f"{base}/mcp",
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/json, text/event-stream",
            "Connection": "close",  # a fresh connection each time, so that both workers get calls
        },
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    for line in response.text.splitlines():
        if line.startswith("data: "):
            return json.loads(line.removeprefix("data: "))["result"]["structuredContent"]
    return json.loads(response.text)["result"]["structuredContent"]


def test_metrics_add_up_across_two_uvicorn_workers(
    alice: Any, chorale: Any, token_for: Any, tmp_path: Path, settings: Any
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "music21_platform.settings",
        "DATABASE_URL": subprocess_database_url(),
        "PUBLIC_URL": base,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "RATE_LIMIT_PER_MINUTE": "100000",
        "RATE_LIMIT_BURST": "100000",
        "GUARD_NAMESPACE": settings.GUARD_NAMESPACE,
        "AUDIT_SEAL_INTERVAL": "0",
    }
    server = subprocess.Popen(  # noqa: S603 - our own interpreter
        [
            sys.executable,
            "-m",
            "uvicorn",
            "music21_platform.asgi:application",
            "--port",
            str(port),
            "--workers",
            "2",
            "--http",
            "music21_platform.http:NoDelayHTTPProtocol",
        ],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        token = token_for(alice, resource=f"{base}/mcp")  # that server's MCP endpoint
        workers = {_mcp_call(base, token, "health_check", {})["process"] for _ in range(12)}
        for _ in range(8):
            _mcp_call(base, token, "score_info", {"score_id": "chorale"})
        totals = []
        for _ in range(6):  # each scrape is answered by either worker: each must see both workers' counts
            text = httpx.get(f"{base}/metrics", headers={"Connection": "close"}, timeout=30).text
            samples = _samples(text)
            totals.append(
                (
                    _value(samples, "mcp_requests_total", tool="score_info", status="success"),
                    _value(samples, "mcp_requests_total", tool="health_check", status="success"),
                )
            )
        assert totals == [(8.0, 12.0)] * 6, (totals, workers)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_tool_call_is_one_span_tree_without_personal_data(chorale: Any, alice: Any, settings: Any) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings.OTEL_ENABLED = True
    invoke_tool("key_analysis", {"score_id": "chorale"}, caller=Caller(user=alice, scopes=frozenset({"music21:read"})))
    spans = {s.name: s for s in exporter.get_finished_spans()}
    exporter.clear()
    root = spans["tool_call"]
    assert root.attributes["tool.name"] == "key_analysis" and root.attributes["outcome"] == "success"
    assert root.attributes["score.id"] == "score:chorale"
    for child in ("guards.bulkhead", "audit.record"):
        assert spans[child].parent.span_id == root.context.span_id, child
    assert spans["music21.run"].parent.span_id == spans["guards.bulkhead"].context.span_id
    everything = json.dumps([dict(s.attributes) for s in spans.values()])
    assert "alice" not in everything
    assert not any(
        k.startswith(("user", "enduser", "client.address", "net.peer")) for s in spans.values() for k in s.attributes
    )


def test_tracing_off_creates_no_spans(chorale: Any, alice: Any, settings: Any) -> None:
    from apps.core import tracing

    settings.OTEL_ENABLED = False
    assert tracing.span("tool_call") is tracing._NULL


def test_each_call_logs_a_json_line_with_its_context(chorale: Any, alice: Any) -> None:
    from apps.core.logs import CallContextFilter, Formatter

    stream = StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(Formatter())
    handler.addFilter(CallContextFilter())
    calls = logging.getLogger("music21_platform.calls")
    calls.addHandler(handler)
    calls.setLevel(logging.INFO)
    try:
        caller = Caller(user=alice, scopes=frozenset({"music21:read"}), client_id="client-7")
        invoke_tool("score_info", {"score_id": "chorale"}, caller=caller)
    finally:
        calls.removeHandler(handler)
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["tool"] == "score_info" and line["outcome"] == "success" and line["client_id"] == "client-7"
    assert line["request_id"] == caller.request_id and line["duration_ms"] > 0
    assert line["user"] and line["user"] != "alice" and line["user"] != str(alice.pk)  # a pseudonym


def test_server_stats_are_for_staff_and_admin_tokens(live_site: str, alice: Any, chorale: Any, token_for: Any) -> None:
    assert httpx.get(f"{live_site}/server_stats").status_code in (401, 403)
    with_read = httpx.get(
        f"{live_site}/server_stats", headers={"Authorization": f"Bearer {token_for(alice, resource='api')}"}
    )
    assert with_read.status_code == 403 and "music21:admin" in with_read.json()["message"]
    staff = staff_user("ops")
    admin_token = token_for(staff, "music21:admin", resource="api")
    stats = httpx.get(f"{live_site}/server_stats", headers={"Authorization": f"Bearer {admin_token}"}).json()
    assert stats["scores_held"] == 1 and stats["uptime_seconds"] > 0
    assert set(stats["breakers"]) == {"music_analysis", "score_import", "composition", "export", "system"}
    assert stats["parsed_score_cache"]["capacity"] == settings.MAX_SCORES_IN_MEMORY
    assert signed_in(staff).get("/server_stats").json()["requests"]["total"] >= 1


@pytest.mark.skipif(not settings.CELERY_BROKER_URL, reason="needs a broker and a real Celery worker")
def test_a_celery_worker_reports_the_analyses_it_did(celery_worker: int, alice: Any) -> None:
    def processed() -> float:
        text = httpx.get(f"http://127.0.0.1:{celery_worker}/metrics", timeout=10).text
        return _value(_samples(text), "music21_files_processed_total")

    before = processed()
    caller = Caller(user=alice, scopes=frozenset({"music21:read"}))
    result = invoke_tool("analyze_corpus", {"path_pattern": "bach/bwv6*", "analysis": "key"}, caller=caller)
    analysed = len([w for w in result["results"] if "error" not in w])
    assert analysed > 0 and processed() - before == analysed


def test_a_celery_workers_metrics_add_up_its_pool_processes_alive(db: None, tmp_path: Path, settings: Any) -> None:
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    broker = OwnRedis()  # a worker that only has to start, on a broker of its own: it is its pool that is measured
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "music21_platform.settings",
        "DATABASE_URL": subprocess_database_url(),
        "REDIS_URL": broker.url,
        "WORKER_METRICS_PORT": str(port),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "AUDIT_SEAL_INTERVAL": "0",
    }
    env.pop("CELERY_BROKER_URL", None)
    command = [sys.executable, "-m", "celery", "-A", "music21_platform", "worker", "--pool=prefork"]
    worker = subprocess.Popen(  # noqa: S603 - our own interpreter
        [*command, "--concurrency=2", "--loglevel=WARNING", "--without-gossip", "--without-mingle"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    main = psutil.Process(worker.pid)

    def scraped() -> tuple[float, float]:
        """The worker's /metrics resident memory, and the resident memory of its processes alive now."""
        samples = _samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
        alive = [main, *main.children()]
        return _value(samples, "music21_memory_usage_bytes", type="rss"), sum(p.memory_info().rss for p in alive)

    def pool() -> list[psutil.Process]:
        return [p for p in main.children() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    try:
        for _ in range(600):  # the pool is started and every process of it has reported its memory
            time.sleep(0.1)
            try:
                reported, alive = scraped()
            except httpx.HTTPError:
                continue
            if len(pool()) == 2 and reported > 0.8 * alive:
                break
        # Before: only the worker's main process reported, not the pool processes that do the work.
        reported, alive = scraped()
        assert 0.8 * alive < reported < 1.25 * alive, (reported, alive)

        killed = pool()
        for process in killed:  # as the kernel or the hard time limit kills them: no exit handler runs
            process.kill()
        for _ in range(600):  # the worker has replaced them, and its new pool processes have reported
            time.sleep(0.1)
            fresh = pool()
            replaced = len(fresh) == 2 and not set(fresh) & set(killed)
            if replaced and all((metrics_dir / f"gauge_livesum_{p.pid}.db").exists() for p in fresh):
                break
        # Before: the killed processes' last memory stayed in the sum until the worker restarted.
        reported, alive = scraped()
        assert reported < 1.25 * alive, (reported, alive)
    finally:
        # Killed, not stopped: a worker whose pool processes were killed hangs in its warm shutdown (billiard).
        for process in main.children():
            process.kill()
        worker.kill()
        worker.wait(timeout=30)
        broker.kill()


def test_a_celery_workers_metrics_answer_whom_the_web_processes_metrics_answer(
    db: None, tmp_path: Path, settings: Any
) -> None:
    # Its own /metrics listens on every interface; it had no access control at all.
    port = free_port()
    broker = OwnRedis()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "music21_platform.settings",
        "DATABASE_URL": subprocess_database_url(),
        "REDIS_URL": broker.url,
        "WORKER_METRICS_PORT": str(port),
        "METRICS_ALLOWED_NETWORKS": "10.0.0.0/8",  # where Prometheus runs: not this test's loopback address
        "METRICS_TOKEN": "scraper-secret",
        "AUDIT_SEAL_INTERVAL": "0",
    }
    env.pop("CELERY_BROKER_URL", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "music21_platform", "worker", "--pool=solo", "--loglevel=WARNING"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        for _ in range(600):
            try:
                refused = httpx.get(url, timeout=10)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert refused.status_code == 403
        assert "music21_memory_usage_bytes" not in refused.text
        allowed = httpx.get(url, headers={"Authorization": "Bearer scraper-secret"}, timeout=10)
        assert allowed.status_code == 200
        assert _value(_samples(allowed.text), "music21_memory_usage_bytes", type="rss") > 0
        assert httpx.get(url, headers={"Authorization": "Bearer guessed"}, timeout=10).status_code == 403
    finally:
        worker.kill()
        worker.wait(timeout=30)
        broker.kill()


def test_a_closed_breaker_reads_closed_whichever_worker_answers_the_scrape(
    db: None, own_redis: Any, tmp_path: Path, settings: Any
) -> None:
    from apps.security.breakers import breaker, breaker_reset

    def scraped_by_another_worker() -> float:
        """The breaker as /metrics says it, answered by a fresh process of the same web container (the uvicorn
        worker that Prometheus's kept-alive connection reaches is not the one that answered the last time)."""
        script = "import django; django.setup(); from apps.tools import monitoring; print(monitoring.metrics_text())"
        text = subprocess.run(  # noqa: S603 - our own interpreter
            [sys.executable, "-c", script],
            env={
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "music21_platform.settings",
                "DATABASE_URL": subprocess_database_url(),
                "REDIS_URL": own_redis.url,
                "GUARD_NAMESPACE": settings.GUARD_NAMESPACE,
                "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
            },
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
        text = ast.literal_eval(text.strip()).decode()  # the bytes' repr
        return _value(_samples(text), "music21_circuit_breaker_open", circuit_name="export")

    breaker("export").open()
    assert scraped_by_another_worker() == 1
    breaker_reset("export")  # as `manage.py circuit_breakers --reset export` does
    # Before: the worker that had answered while it was open still counted 1, and the highest value was shown, so
    # CircuitBreakerOpen went on firing for a breaker that had closed.
    assert scraped_by_another_worker() == 0


def _json_lines_of(logger_name: str) -> tuple[logging.Logger, logging.Handler, StringIO]:
    from apps.core.logs import CallContextFilter, Formatter

    stream = StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(Formatter())
    handler.addFilter(CallContextFilter())
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    return logger, handler, stream


def test_the_traceback_of_a_failed_call_carries_its_request_id(alice: Any, extra_tool: Any) -> None:
    from apps.core.errors import InternalError

    def broken(caller: Caller) -> dict[str, Any]:
        raise RuntimeError("a bug")

    name = extra_tool("test_broken", broken)
    logger, handler, stream = _json_lines_of("apps.tools.runner")
    try:
        caller = Caller(user=alice, scopes=frozenset({"music21:read"}), client_id="client-7")
        with pytest.raises(InternalError) as raised:
            invoke_tool(name, {}, caller=caller)
    finally:
        logger.removeHandler(handler)
    assert caller.request_id in raised.value.message  # what the client is told
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    # Before: the line was written in the tool's thread, which did not have the call's context: the request id was
    # only in the message text, so filtering the logs on "request_id" (docs/operations.md) missed the traceback.
    assert line["request_id"] == caller.request_id and line["tool"] == name and line["client_id"] == "client-7"
    assert "RuntimeError: a bug" in line["exc_info"]
    assert line["user"] and line["user"] != "alice"  # the pseudonym


def test_a_tool_process_logs_with_the_context_of_the_call_it_runs(alice: Any, extra_tool: Any) -> None:
    from apps.core.errors import InternalError
    from apps.tools import runner

    def broken(caller: Caller) -> dict[str, Any]:
        raise RuntimeError("a bug")

    name = extra_tool("test_broken", broken)
    context = {"request_id": "r-1", "user": "pseudonym-1", "client_id": "client-7", "tool": name}
    logger, handler, stream = _json_lines_of("apps.tools.runner")
    try:  # what a tool process does with a call it receives from its serving process
        with pytest.raises(InternalError):
            runner._worker_call(name, alice.pk, ["music21:read"], "client-7", None, "r-1", {}, context, None)
    finally:
        logger.removeHandler(handler)
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert {key: line.get(key) for key in context} == context


def test_with_json_logs_the_servers_own_lines_are_json_too(db: None, settings: Any) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "music21_platform.settings",
        "DATABASE_URL": subprocess_database_url(),
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "LOG_FORMAT": "json",
        "AUDIT_SEAL_INTERVAL": "0",
    }
    server = subprocess.Popen(  # noqa: S603 - our own interpreter
        [sys.executable, "-m", "uvicorn", "music21_platform.asgi:application", "--port", str(port)],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert httpx.get(f"http://127.0.0.1:{port}/no-such-page", timeout=5).status_code == 404
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    lines = [line for line in output.splitlines() if line.strip()]
    # Before: uvicorn's own lines (start-up, shutdown, one access line per request) were plain text among the JSON
    # ones, which a collector parsing JSON lines drops or files as unparsed.
    not_json = [line for line in lines if not line.startswith("{")]
    assert not not_json, not_json
    messages = [json.loads(line)["message"] for line in lines]
    assert any('"GET /no-such-page HTTP/1.1" 404' in message for message in messages), messages


def test_scrapes_during_a_redis_outage_do_not_log_it_each_time(
    db: None, own_redis: Any, settings: Any, caplog: Any
) -> None:
    settings.CELERY_BROKER_URL = own_redis.url
    settings.CELERY_TASK_ALWAYS_EAGER = False
    assert "music21_analysis_queue_size 0.0" in Client().get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    own_redis.kill()
    with caplog.at_level(logging.WARNING):
        for _ in range(3):  # Prometheus scrapes every 15 s for as long as the outage lasts
            assert _scrape() is not None
    # Before: a warning "cannot read the Celery queue length" at every scrape, besides the outage's own line.
    lines = [r.getMessage() for r in caplog.records if "Celery queue" in r.getMessage() or "Redis at" in r.getMessage()]
    assert len(lines) == 1 and "is unreachable" in lines[0], lines
