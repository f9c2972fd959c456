"""deploy/ describes this system: its files parse, and every metric an alert or the dashboard uses is one the
application really exports (or Prometheus's own `up`)."""

from __future__ import annotations

import json
import re
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
