"""Liveness and readiness, over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx2


def test_liveness(live_site: str) -> None:
    assert httpx2.get(f"{live_site}/health").json() == {"status": "ok"}


def test_readiness_names_each_dependency(live_site: str) -> None:
    response = httpx2.get(f"{live_site}/health/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "migrations", "cache", "broker"}
    assert all(value.startswith("ok") for value in body["checks"].values())


def test_readiness_is_503_and_says_why_when_the_broker_is_down(live_site: str, settings: Any) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = False
    from music21_platform.celery import app

    previous = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    try:
        response = httpx2.get(f"{live_site}/health/ready", timeout=30)
    finally:
        app.conf.broker_url = previous
    assert response.status_code == 503
    assert response.json()["checks"]["broker"].startswith("error")
    assert response.json()["checks"]["database"] == "ok"
