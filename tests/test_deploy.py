"""deploy/ describes this system: its files parse, and every metric an alert or the dashboard uses is one the
application really exports (or Prometheus's own `up`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

DEPLOY = Path(settings.BASE_DIR) / "deploy"
PROMQL_WORDS = {
    "sum", "rate", "irate", "increase", "by", "without", "max", "min", "avg", "count", "histogram_quantile",
    "le", "on", "ignoring", "and", "or", "unless", "bool", "clamp_min", "clamp_max", "abs", "time", "vector",
    "absent", "topk", "bottomk", "delta", "deriv", "avg_over_time", "max_over_time", "min_over_time", "offset",
    "label_replace", "sort", "sort_desc", "changes", "resets", "scalar", "group", "quantile", "stddev",
    "group_left", "group_right", "rate_interval", "interval",
}  # fmt: skip


def _exported_names(db: Any) -> set[str]:
    text = Client().get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names | {"up"}


def _metric_names(expression: str) -> set[str]:
    without_labels = re.sub(r"\{[^}]*\}", "{}", re.sub(r"\$\w+", "", expression))  # Grafana's $__variables
    without_strings = re.sub(r'"[^"]*"', '""', without_labels)
    without_strings = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", without_strings)
    candidates = set(re.findall(r"\b[a-z_][a-z0-9_:]*\b", without_strings))
    return {c for c in candidates if "_" in c and c not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhd]", c)}


def _expressions_in_dashboard(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for value in node.values() for e in _expressions_in_dashboard(value)]
    if isinstance(node, list):
        return [e for item in node for e in _expressions_in_dashboard(item)]
    return []


def test_every_yaml_file_parses() -> None:
    files = sorted(DEPLOY.rglob("*.yml")) + sorted(DEPLOY.rglob("*.yaml"))
    assert len(files) >= 10
    for path in files:
        documents = list(yaml.safe_load_all(path.read_text()))
        assert documents and all(d is not None for d in documents), path


def test_alerts_and_dashboard_use_only_exported_metrics(db: None) -> None:
    exported = _exported_names(db)
    rules = yaml.safe_load((DEPLOY / "monitoring" / "alert_rules.yml").read_text())
    alerts = {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}
    assert {"HighErrorRate", "HighMemoryUsage", "CircuitBreakerOpen"} <= set(alerts)
    dashboard = json.loads((DEPLOY / "monitoring" / "grafana" / "dashboards" / "music21.json").read_text())
    expressions = list(alerts.values()) + _expressions_in_dashboard(dashboard)
    assert len(expressions) > 10
    for expression in expressions:
        unknown = _metric_names(str(expression)) - exported
        assert not unknown, f"{expression!r} uses {sorted(unknown)}, which /metrics does not export"


@pytest.mark.parametrize("script", sorted(p.name for p in (DEPLOY / "backup").glob("*.sh")))
def test_backup_scripts_are_valid_shell(script: str) -> None:
    import subprocess

    subprocess.run(["bash", "-n", str(DEPLOY / "backup" / script)], check=True)  # noqa: S603, S607


def _postgres_server() -> str | None:
    """A PostgreSQL server to back up and restore on: the test database's own, else the local one (CI and this
    machine run one); None when none answers."""
    import psycopg

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("postgresql"):
        server = f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}"
    else:
        server = os.environ.get("BACKUP_TEST_SERVER", "postgresql://postgres@127.0.0.1:5432")
    try:
        with psycopg.connect(f"{server}/postgres", connect_timeout=2):
            return server
    except psycopg.Error:
        return None


POSTGRES = _postgres_server() if shutil.which("pg_dump") else None

# Run in the platform's own interpreter against the source database: an account, a chorale, an analysis, and the
# trail sealed, as a running platform would have it.
_POPULATE = """
import django; django.setup()
from django.core.management import call_command
from django.contrib.auth import get_user_model
from apps.compliance.audit import audit_seal
from apps.tools.invocation import Caller, invoke_tool
call_command("migrate", verbosity=0)
alice = get_user_model().objects.create_user("alice", "alice@example.com", "correct horse battery staple")
caller = Caller.operator(alice)
invoke_tool("import_score", {"score_id": "chorale", "source": "bach/bwv66.6", "source_type": "corpus"}, caller=caller)
invoke_tool("key_analysis", {"score_id": "chorale"}, caller=caller)
audit_seal()
"""


@pytest.mark.skipif(POSTGRES is None, reason="needs PostgreSQL's client programs and a server (.ci/run has both)")
def test_a_backup_restores_into_a_fresh_database_with_identical_row_counts(tmp_path: Path) -> None:
    import psycopg

    source, fresh = (f"{kind}_{uuid.uuid4().hex[:10]}" for kind in ("backup_source", "backup_restored"))
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
        for name in (source, fresh):
            admin.execute(f'CREATE DATABASE "{name}"')
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "music21_platform.settings",
        "BACKUP_DIR": str(tmp_path),
        "DATABASE_URL": f"{POSTGRES}/{source}",
        "AUDIT_SEAL_INTERVAL": "0",
        "MANAGE": f"{sys.executable} manage.py",
    }
    env.pop("REDIS_URL", None)  # the scratch platform needs no broker: its tasks run in process
    try:
        run = {"env": env, "cwd": settings.BASE_DIR, "check": True, "capture_output": True}
        subprocess.run([sys.executable, "-c", _POPULATE], **run)  # noqa: S603
        subprocess.run(["bash", str(DEPLOY / "backup" / "backup-db.sh")], **run)  # noqa: S603, S607
        dump = next(tmp_path.glob("*.dump"))
        restore = ["bash", str(DEPLOY / "backup" / "restore-db.sh"), "--yes", str(dump)]
        subprocess.run(restore, **{**run, "env": {**env, "DATABASE_URL": f"{POSTGRES}/{fresh}"}})  # noqa: S603
        counts = _row_counts(f"{POSTGRES}/{source}")
        assert counts["tools_score"] == 1 and counts["compliance_auditevent"] >= 2
        assert _row_counts(f"{POSTGRES}/{fresh}") == counts
    finally:
        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
            for name in (source, fresh):
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _row_counts(url: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(url) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1"
            )
        ]
        return {table: conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] for table in tables}  # noqa: S608


# Variables the deployment sets that the settings module does not read: each is read by something named here.
READ_ELSEWHERE = {
    "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB",  # the postgres image
    "GRAFANA_ADMIN_USER", "GRAFANA_ADMIN_PASSWORD",  # the grafana service
    "WEB_WORKERS", "WORKER_CONCURRENCY", "MIGRATE_ON_START", "WEB_GRACEFUL_TIMEOUT",  # docker-entrypoint.sh
    "PUBLIC_HOSTNAME",  # the Kubernetes deployments build ALLOWED_HOSTS from it
    "FORWARDED_ALLOW_IPS",  # uvicorn
}  # fmt: skip


def _settings_variables() -> set[str]:
    source = (Path(settings.BASE_DIR) / "music21_platform" / "settings.py").read_text()
    return set(re.findall(r'env_(?:str|bool|number|url)\(\s*"([A-Z_]+)"', source)) | set(
        re.findall(r'_env\.\w+\(\s*"([A-Z_]+)"', source)
    )


def test_every_variable_the_deployment_sets_is_read_by_something() -> None:
    compose_text = (DEPLOY / "docker-compose.yml").read_text()
    interpolated = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", compose_text))  # read by docker compose itself
    known = _settings_variables() | READ_ELSEWHERE | interpolated
    env_example = re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (DEPLOY / "env.example").read_text(), re.MULTILINE)
    configmap = yaml.safe_load((DEPLOY / "k8s" / "configmap.yaml").read_text())["data"]
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    app_services = [s for s in compose["services"].values() if "build" in s or "music21" in str(s.get("image", ""))]
    compose_vars = {name for service in app_services for name in (service.get("environment") or {})}
    for name in set(env_example) | set(configmap) | compose_vars:
        if name.startswith("OTEL_"):
            continue  # the OpenTelemetry SDK's own variables
        assert name in known, f"{name} is set by deploy/ but nothing reads it"


def test_compose_and_kubernetes_point_at_files_and_ports_that_exist() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        build = service.get("build")
        if isinstance(build, dict):
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts {source}, which does not exist"
    documents = [d for path in sorted((DEPLOY / "k8s").glob("*.yaml")) for d in yaml.safe_load_all(path.read_text())]
    web = next(d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("web"))
    container = web["spec"]["template"]["spec"]["containers"][0]
    ports = {p["containerPort"] for p in container["ports"]}
    assert 8000 in ports
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    service = next(d for d in documents if d["kind"] == "Service")
    assert {p.get("targetPort") for p in service["spec"]["ports"]} & (ports | {"http"})
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (DEPLOY / "k8s" / resource).is_file(), resource


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="needs promtool (Debian's prometheus; .ci/run installs it)"
)
def test_promtool_accepts_the_rules_and_the_config() -> None:
    monitoring = DEPLOY / "monitoring"
    subprocess.run(["promtool", "check", "rules", str(monitoring / "alert_rules.yml")], check=True)  # noqa: S603, S607
    subprocess.run(["promtool", "check", "config", str(monitoring / "prometheus.yml")], check=True)  # noqa: S603, S607


def _bytes(quantity: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    for unit, factor in sorted(units.items(), key=lambda item: -len(item[0])):
        if quantity.endswith(unit):
            return float(quantity.removesuffix(unit)) * factor
    return float(quantity)


def test_kubernetes_web_pods_stop_a_runaway_call_before_the_kernel_kills_the_pod() -> None:
    configmap = yaml.safe_load((DEPLOY / "k8s" / "configmap.yaml").read_text())["data"]
    web = yaml.safe_load((DEPLOY / "k8s" / "web-deployment.yaml").read_text())
    limit = _bytes(web["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"])
    workers = int(configmap["WEB_WORKERS"])
    tool_processes = float(configmap.get("MAX_MEMORY_GB", "8.0")) * 2**30  # per uvicorn worker; 8 is the default
    uvicorn_worker = 2**28  # what a uvicorn worker itself holds (its tool processes apart), with room to spare
    # Before: MAX_MEMORY_GB was left at 8 in 3Gi pods, so the memory guard never stopped a call: the OOM killer did,
    # taking the pod and every call in it.
    assert workers * (tool_processes + uvicorn_worker) <= limit
