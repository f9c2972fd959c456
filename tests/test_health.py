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


def test_readiness_is_200_degraded_and_says_why_when_the_broker_is_down(live_site: str, settings: Any) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = False
    from music21_platform.celery import app

    previous = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    try:
        response = httpx2.get(f"{live_site}/health/ready", timeout=30)
    finally:
        app.conf.broker_url = previous
    # Calls are still served (only corpus jobs need the broker): the pod stays in service, saying what is down.
    assert response.status_code == 200
    assert response.json()["status"] == "degraded" and response.json()["down"] == ["broker"]
    assert response.json()["checks"]["broker"].startswith("error")
    assert response.json()["checks"]["database"] == "ok"


def test_readiness_is_503_naming_the_database_while_it_is_unreachable_and_200_after(db: None, tmp_path: Any) -> None:
    from django.db import connection
    from django.test import Client

    original = dict(connection.settings_dict)
    connection.close()
    close_pool = getattr(connection, "close_pool", lambda: None)  # PostgreSQL's pool keeps the settings it began with
    close_pool()
    # Really unreachable from this process: a port nothing listens on, or a SQLite file in a missing folder.
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = str(tmp_path / "missing" / "db.sqlite3")
    else:
        connection.settings_dict["PORT"] = "1"
    try:
        down = Client().get("/health/ready")
        assert down.status_code == 503
        assert down.json()["status"] == "unavailable" and "database" in down.json()["down"]
        assert down.json()["checks"]["database"].startswith("error")
        # not asked again for the migrations: the probe would wait twice for a connection, past its own timeout
        assert down.json()["checks"]["migrations"] == "not checked: the database does not answer"
        assert down.json()["down"] == ["database", "migrations"]
        assert down.json()["checks"]["cache"].startswith("ok")
    finally:
        connection.close()
        close_pool()
        connection.settings_dict.update(original)
    again = Client().get("/health/ready")
    assert again.status_code == 200 and again.json()["checks"]["database"] == "ok"
