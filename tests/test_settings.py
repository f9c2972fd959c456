"""Configuration is validated at start-up: a bad value stops the process with a message naming the variable."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from tests.support import free_port

ROOT = Path(__file__).resolve().parent.parent


def _python(*arguments: str, **env: str) -> subprocess.CompletedProcess[str]:
    """This interpreter run with `arguments` on the project's settings, as a fresh deployment with only `env` set
    (no DATABASE_URL, REDIS_URL or broker from the test run)."""
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")}
    return subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, *arguments],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "music21_platform.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _start(**env: str) -> subprocess.CompletedProcess[str]:
    return _python("-c", "import django; django.setup()", **env)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEBUG": "ture"}, "DEBUG: expected true or false, got 'ture'"),
        ({"MAX_CONCURRENT_REQUESTS": "many"}, "MAX_CONCURRENT_REQUESTS: expected an integer"),
        ({"REQUEST_TIMEOUT": "0"}, "REQUEST_TIMEOUT: must be greater than 0"),
        ({"RATE_LIMIT_PER_MINUTE": "-5"}, "RATE_LIMIT_PER_MINUTE: must be at least 1"),
        ({"BH_USER_SHARE": "1.5"}, "BH_USER_SHARE: must be at most 1"),
        ({"BH_USER_SHARE": "0"}, "BH_USER_SHARE: must be greater than 0"),
        ({"REQUEST_TIMEOUT": "nan"}, "REQUEST_TIMEOUT: expected a finite number, got 'nan'"),
        ({"MAX_MEMORY_GB": "inf"}, "MAX_MEMORY_GB: expected a finite number, got 'inf'"),
        ({"DATABASE_URL": "mysql2://x"}, "DATABASE_URL: scheme must be one of"),
        ({"PUBLIC_URL": "http://example.org:80a"}, "PUBLIC_URL: the port must be a number from 0 to 65535"),
        ({"REDIS_URL": "redis://127.0.0.1:99999/0"}, "REDIS_URL: the port must be a number from 0 to 65535"),
        ({"PUBLIC_URL": "https://"}, "PUBLIC_URL: a URL such as https://example.org names its host, got 'https://'"),
        ({"WORKER_METRICS_PORT": "metrics"}, "WORKER_METRICS_PORT: expected an integer, got 'metrics'"),
        ({"WORKER_METRICS_PORT": "98080"}, "WORKER_METRICS_PORT: must be at most 65535"),
        ({"PROMETHEUS_MULTIPROC_DIR": "/no/such/folder"}, "PROMETHEUS_MULTIPROC_DIR: '/no/such/folder' is not a"),
        ({"SECURE_HSTS_PRELOAD": "yes"}, "SECURE_HSTS_PRELOAD: expected true or false, got 'yes'"),
        (
            {"OTEL_ENABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "jaeger:4318"},
            "OTEL_EXPORTER_OTLP_ENDPOINT: scheme must be one of http, https, got 'jaeger:4318'",
        ),
        ({"REDIS_URL": "unix:///run/redis.sock"}, "REDIS_URL: scheme must be one of redis, rediss, got 'unix:"),
        ({"DATABASE_URL": "sqlite://"}, "DATABASE_URL: names no database file (sqlite:///path/to/db.sqlite3), got"),
        ({"CELERY_BROKER_URL": "amqp://rabbit:5672//"}, "CELERY_BROKER_URL: needs REDIS_URL as well"),
        ({"CELERY_BROKER_URL": "memory://"}, "CELERY_BROKER_URL: scheme must be one of redis, rediss, amqp, got"),
        ({"PUBLIC_URL": "https://example.org/music21"}, "PUBLIC_URL: only scheme, host and port, such as https://"),
        ({"LOCKOUT_DURATION": "0"}, "LOCKOUT_DURATION: must be at least 1, got '0'"),
        (
            {"DATABASE_URL": "postgres://music21:pa#ss@db:5432/music21"},
            "DATABASE_URL: the port must be a number from 0 to 65535 (in a user name or password, write : / ? # @ as",
        ),
        ({"SCORE_IMPORT_ROOT": "/no/such/folder"}, "SCORE_IMPORT_ROOT: '/no/such/folder' is not a directory"),
        ({"DEPLOYMENT_ENV": "production"}, "SECRET_KEY: required when DEBUG is off"),
        (
            {"DEPLOYMENT_ENV": "production", "SECRET_KEY": "k" * 50, "DEBUG": "true"},
            "DEBUG: must be off in production (Django's debug pages show tracebacks, settings and queries to anyone",
        ),
        ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL: expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got 'verbose'"),
        ({"DEPLOYMENT_ENV": "prod"}, "DEPLOYMENT_ENV: expected development, test, staging or production"),
        ({"DEPLOYMENT_ENV": "Prod"}, "DEPLOYMENT_ENV: expected development, test, staging or production, got 'Prod'"),
        ({"LOG_FORMAT": "XML"}, "LOG_FORMAT: expected json or plain (in any case), got 'XML'"),
        ({"REQUIRE_AUTH": "false"}, "REQUIRE_AUTH: /mcp always requires an OAuth bearer token, so false is not"),
        (
            {"DEPLOYMENT_ENV": "production", "SECRET_KEY": "k" * 50, "AUDIT_LOG_ENABLED": "false"},
            "AUDIT_LOG_ENABLED: every tool call must be in the audit trail in production, so false is refused there",
        ),
        (
            {"DEPLOYMENT_ENV": "staging", "SECRET_KEY": "k" * 50, "AUDIT_LOG_ENABLED": "False"},
            "AUDIT_LOG_ENABLED: every tool call must be in the audit trail in staging, so false is refused there",
        ),
    ],
)
def test_a_bad_value_stops_start_up_and_is_named_without_a_traceback(env: dict[str, str], message: str) -> None:
    result = _start(**env)

    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_embedded_defaults_start_without_any_environment() -> None:
    assert _start().returncode == 0


@pytest.mark.parametrize("deployment", ["development", "test"])
def test_the_audit_trail_may_be_turned_off_in_development_and_test(deployment: str) -> None:
    result = _python(
        "-c",
        "import django; django.setup(); from django.conf import settings; print(settings.AUDIT_LOG_ENABLED)",
        DEPLOYMENT_ENV=deployment,
        AUDIT_LOG_ENABLED="false",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "False"


@pytest.mark.parametrize(
    ("env", "seen"),
    [
        ({"DEPLOYMENT_ENV": "Production", "SECRET_KEY": "k" * 50}, "production json"),
        ({"DEPLOYMENT_ENV": "STAGING", "SECRET_KEY": "k" * 50, "LOG_FORMAT": "Plain"}, "staging plain"),
        ({"DEPLOYMENT_ENV": "Test", "LOG_FORMAT": "JSON"}, "test json"),
    ],
)
def test_the_deployment_and_the_log_format_may_be_given_in_any_case(env: dict[str, str], seen: str) -> None:
    script = (
        "import django, logging; django.setup()\n"
        "from django.conf import settings\n"
        "formatter = logging.getLogger().handlers[0].formatter\n"
        "print(settings.DEPLOYMENT_ENV, 'json' if type(formatter).__module__ == 'apps.core.logs' else 'plain')\n"
    )
    result = _python("-c", script, **env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == seen


def test_the_log_level_may_be_given_in_lower_case() -> None:
    result = _python(
        "-c", "import django, logging; django.setup(); print(logging.getLogger().level)", LOG_LEVEL="debug"
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == str(logging.DEBUG)


@pytest.mark.parametrize(
    ("allowed_hosts", "answers"),
    [(" music21.example.org , localhost ", ("200", "400")), ("", ("400", "200"))],
)
def test_allowed_hosts_as_people_write_them(allowed_hosts: str, answers: tuple[str, str]) -> None:
    """Spaces around the commas are no part of a name; an empty value is the default (PUBLIC_URL's host, loopback)."""
    script = (
        "import django; django.setup()\n"
        "from django.test import Client\n"
        "print(Client(HTTP_HOST='music21.example.org').get('/health').status_code,"
        " Client(HTTP_HOST='127.0.0.1').get('/health').status_code)\n"
    )
    result = _python("-c", script, ALLOWED_HOSTS=allowed_hosts)

    assert result.returncode == 0, result.stderr
    assert tuple(result.stdout.split()[-2:]) == answers


def test_secrets_can_come_from_files(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("k" * 50)

    assert _start(DEPLOYMENT_ENV="production", SECRET_KEY_FILE=str(key)).returncode == 0


@pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="PostgreSQL only")
@pytest.mark.parametrize(("suffix", "prepared"), [("", True), ("?server_side_binding=false", False)])
def test_postgresql_prepares_the_queries_it_repeats_unless_the_url_says_not_to(suffix: str, prepared: bool) -> None:
    script = (
        "import django; django.setup()\n"
        "from django.db import connection\n"
        "for _ in range(6):\n"
        "    with connection.cursor() as cursor: cursor.execute('SELECT %s::int + 1', [1])\n"
        "with connection.cursor() as cursor:\n"
        "    cursor.execute('SELECT count(*) FROM pg_prepared_statements')\n"
        "    print(cursor.fetchone()[0])\n"
    )
    url = os.environ["DATABASE_URL"].split("?")[0] + suffix
    result = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "music21_platform.settings", "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert (int(result.stdout.split()[-1]) > 0) is prepared


HTTPS_PRODUCTION = {
    "DEPLOYMENT_ENV": "production",
    "SECRET_KEY": "a-production-secret-of-more-than-fifty-characters-0123456789",
    "PUBLIC_URL": "https://music21.example.org",
}


def test_an_https_deployment_passes_djangos_deployment_checks() -> None:
    result = _python("manage.py", "check", "--deploy", "--fail-level", "WARNING", **HTTPS_PRODUCTION)

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_an_https_deployment_sends_hsts_and_secure_cookies_and_lets_probes_in_over_http() -> None:
    script = (
        "import django; django.setup()\n"
        "from django.test import Client\n"
        "client = Client(HTTP_HOST='music21.example.org')\n"
        "page = client.get('/accounts/login/', headers={'X-Forwarded-Proto': 'https'})\n"
        "print('hsts', page.headers.get('Strict-Transport-Security'))\n"
        "print('cookie', page.cookies['csrftoken']['secure'])\n"
        "plain = client.get('/accounts/login/')\n"
        "print('plain', plain.status_code, plain.headers.get('Location'))\n"
        "print('probe', client.get('/health').status_code, client.get('/health/ready').status_code)\n"
    )
    result = _python("-c", script, **HTTPS_PRODUCTION)
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)

    assert result.returncode == 0, result.stderr
    assert lines["hsts"] == "max-age=31536000; includeSubDomains"
    assert lines["cookie"] == "True"
    assert lines["plain"] == "301 https://music21.example.org/accounts/login/"
    assert "301" not in lines["probe"].split()


@pytest.mark.parametrize("host", [None, "0.0.0.0", "::1"])  # noqa: S104 - listening on every address is tested
def test_make_run_on_another_port_tells_clients_that_port(tmp_path: Path, host: str | None) -> None:
    """`make run PORT=...` serves the OAuth discovery of that port: a client that meets the 401 there is sent to an
    authorization server and a resource it can reach, not to the default port 8000 where nothing listens. Listening
    on every address (HOST=0.0.0.0), it names this machine's loopback address, which a local client reaches; on an
    IPv6 address, that address in brackets."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "PUBLIC_URL")}
    server = subprocess.Popen(  # noqa: S603 - the project's own make target
        ["make", "run", f"PORT={port}", *([f"HOST={host}"] if host else [])],  # noqa: S607
        cwd=ROOT,
        env={**clean, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        base = f"http://{'[::1]' if host == '::1' else '127.0.0.1'}:{port}"
        refused = _when_served(f"{base}/mcp", server)
        assert refused.status_code == 401
        metadata_url = refused.headers["WWW-Authenticate"].split('resource_metadata="')[1].split('"')[0]
        assert metadata_url == f"{base}/.well-known/oauth-protected-resource/mcp"
        metadata = httpx2.get(metadata_url, timeout=10).json()
        assert metadata["resource"] == f"{base}/mcp"
        assert metadata["authorization_servers"] == [base]
        issuer = httpx2.get(f"{base}/.well-known/oauth-authorization-server", timeout=10).json()
        assert issuer["issuer"] == base
        assert issuer["token_endpoint"].startswith(f"{base}/")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _when_served(url: str, server: subprocess.Popen[bytes]) -> httpx2.Response:
    """The answer to a POST of `url` once the server started by `make run` takes requests (it installs nothing
    here, but migrates a fresh database first)."""
    deadline = time.monotonic() + 120
    while True:
        assert server.poll() is None, f"make run exited with {server.returncode}"
        try:
            return httpx2.post(url, json={}, timeout=5)
        except httpx2.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)


# What a start prints when STATIC_ROOT is missing: whitenoise's middleware started as it is for each worker, and
# its warning for a missing directory given once more, since a checkout where collectstatic ran has the directory.
_START_WITHOUT_STATIC_ROOT = (
    "import django, warnings; django.setup()\n"
    "from django.conf import settings\n"
    "from whitenoise.middleware import WhiteNoiseMiddleware\n"
    "WhiteNoiseMiddleware(lambda request: None)\n"
    "warnings.warn(f'No directory at: {settings.STATIC_ROOT}', UserWarning)\n"
    "print('started')"
)


def test_make_run_without_collectstatic_starts_without_a_static_files_warning() -> None:
    """In development `make run` serves static files from the apps (WHITENOISE_USE_FINDERS): no collectstatic is
    needed, so a missing STATIC_ROOT is no cause for whitenoise's 'No directory at' warning on every start."""
    result = _python("-W", "default", "-c", _START_WITHOUT_STATIC_ROOT)

    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout
    assert "No directory at" not in result.stderr


def test_a_production_start_still_warns_of_a_missing_static_root() -> None:
    result = _python("-W", "default", "-c", _START_WITHOUT_STATIC_ROOT, **HTTPS_PRODUCTION)

    assert result.returncode == 0, result.stderr
    assert "No directory at" in result.stderr


def _readme_variables() -> set[str]:
    """The variables named in the first column of the README's configuration table."""
    text = (ROOT / "README.md").read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in text.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row)}


def test_the_readme_lists_every_variable_the_settings_read_and_no_other() -> None:
    source = (ROOT / "music21_platform" / "settings.py").read_text()
    read = set(re.findall(r'env_(?:str|bool|number|url)\(\s*"([A-Z_]+)"', source))
    read |= set(re.findall(r'_env\.\w+\(\s*"([A-Z_]+)"', source))
    read |= {"OTEL_SERVICE_NAME"}  # the OpenTelemetry SDK's own

    assert read - _readme_variables() == set(), "read but not in the README's table"
    assert _readme_variables() - read == set(), "in the README's table but read by nothing"


def test_an_unknown_deployment_is_named_alone() -> None:
    """A misspelt DEPLOYMENT_ENV is the one problem: not also a SECRET_KEY that only its misspelling made required."""
    result = _start(DEPLOYMENT_ENV="prod")

    assert result.returncode != 0
    assert "DEPLOYMENT_ENV: expected development, test, staging or production, got 'prod'" in result.stderr
    assert "SECRET_KEY" not in result.stderr


def test_debug_may_be_on_in_staging() -> None:
    """Debugging a staging deployment is what staging is for; only production refuses DEBUG."""
    result = _python(
        "-c",
        "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)",
        DEPLOYMENT_ENV="staging",
        SECRET_KEY="k" * 50,
        DEBUG="true",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "True"
