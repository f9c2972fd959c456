"""Configuration is validated at start-up: a bad value stops the process with a message naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _start(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "music21_platform.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEBUG": "ture"}, "DEBUG: expected true or false, got 'ture'"),
        ({"MAX_CONCURRENT_REQUESTS": "many"}, "MAX_CONCURRENT_REQUESTS: expected an integer"),
        ({"REQUEST_TIMEOUT": "0"}, "REQUEST_TIMEOUT: must be greater than 0"),
        ({"RATE_LIMIT_PER_MINUTE": "-5"}, "RATE_LIMIT_PER_MINUTE: must be at least 1"),
        ({"DATABASE_URL": "mysql2://x"}, "DATABASE_URL: scheme must be one of"),
        ({"SCORE_IMPORT_ROOT": "/no/such/folder"}, "SCORE_IMPORT_ROOT: '/no/such/folder' is not a directory"),
        ({"DEPLOYMENT_ENV": "production"}, "SECRET_KEY: required when DEBUG is off"),
        ({"DEPLOYMENT_ENV": "prod"}, "DEPLOYMENT_ENV: expected development, test, staging or production"),
    ],
)
def test_a_bad_value_stops_start_up_and_is_named(env: dict[str, str], message: str) -> None:
    result = _start(**env)

    assert result.returncode != 0
    assert message in result.stderr


def test_embedded_defaults_start_without_any_environment() -> None:
    assert _start().returncode == 0


def test_secrets_can_come_from_files(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("k" * 50)

    assert _start(DEPLOYMENT_ENV="production", SECRET_KEY_FILE=str(key)).returncode == 0
