"""Settings for the music21 platform, read from the environment.

One module for every environment. With nothing set it runs on embedded defaults (SQLite, the local-memory cache,
Celery tasks in process) so that `make run` works straight after a clone. Every value is validated here, at
start-up: a bad one stops the process with a message that names the variable. Secrets can also be given as
`<NAME>_FILE` (a path whose contents are the value), as container platforms mount them.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import sys
import warnings
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

from apps.core import env
from apps.core.env import env_bool, env_number, env_str, env_url
from apps.security.oauth_settings import oauth2_provider_settings

BASE_DIR = Path(__file__).resolve().parent.parent

_env = environ.Env()
_problems = env.problems  # every bad value, refused together at the end of this module

# --- Core -------------------------------------------------------------------------------------------------------

# Any case ("Production" as people write it), as LOG_LEVEL and LOG_FORMAT; compared in lower case below.
DEPLOYMENT_ENV = (env_str("DEPLOYMENT_ENV", "development") or "development").lower()
if DEPLOYMENT_ENV not in ("development", "test", "staging", "production"):
    _problems.append(
        f"DEPLOYMENT_ENV: expected development, test, staging or production, got {env_str('DEPLOYMENT_ENV')!r}"
    )
DEBUG = env_bool("DEBUG", False)
if DEBUG and DEPLOYMENT_ENV == "production":
    _problems.append(
        "DEBUG: must be off in production (Django's debug pages show tracebacks, settings and queries to anyone who "
        "makes a request fail)"
    )


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if DEPLOYMENT_ENV not in ("development", "test", "staging", "production"):
        return key or ""  # refused above: which deployment this is decides what SECRET_KEY must be
    if key:
        if DEPLOYMENT_ENV in ("staging", "production") and len(key) < 32:
            _problems.append("SECRET_KEY: must be at least 32 characters outside development")
        return key
    if DEBUG or DEPLOYMENT_ENV in ("development", "test"):
        # No secret default in code: a local run gets a random key, kept in a git-ignored file so that sessions
        # survive restarts of `make run`.
        key_file = BASE_DIR / ".secret_key"
        if not key_file.exists():
            key_file.write_text(secrets.token_urlsafe(50))
            key_file.chmod(0o600)
        return key_file.read_text().strip()
    _problems.append("SECRET_KEY: required when DEBUG is off outside development (or set SECRET_KEY_FILE)")
    return ""


SECRET_KEY = _secret_key()

PUBLIC_URL = (env_url("PUBLIC_URL", "http://127.0.0.1:8000", schemes=("http", "https")) or "").rstrip("/")
_public_parts = urlsplit(PUBLIC_URL)
if _public_parts.path or _public_parts.query or _public_parts.fragment:
    # The server answers at the root of its host (the sign-in page, the OAuth endpoints, the discovery documents):
    # the issuer and the MCP resource are built on PUBLIC_URL, and under a path they would name pages nobody serves.
    _problems.append(f"PUBLIC_URL: only scheme, host and port, such as https://music21.example.org, got {PUBLIC_URL!r}")
_public_host = _public_parts.hostname or "127.0.0.1"
# "a.example, b.example" as people write it: a host with a space around it would match no request.
ALLOWED_HOSTS = [host.strip() for host in (env_str("ALLOWED_HOSTS") or "").split(",") if host.strip()] or [
    _public_host,
    "127.0.0.1",
    "localhost",
    "[::1]",
]
CSRF_TRUSTED_ORIGINS = [PUBLIC_URL]

INSTALLED_APPS = [
    # Django's admin with our site class as its default site (the staff second factor, the dashboard index).
    "music21_platform.apps.PlatformAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "oauth2_provider",
    "axes",
    "django_prometheus",
    "rest_framework",
    "auditlog",
    "django_celery_beat",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "csp",
    "apps.tools",
    "apps.security",
    "apps.compliance",
    "apps.mcp_bridge",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified(): the staff second factor
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",
    "auditlog.middleware.AuditlogMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "music21_platform.urls"
WSGI_APPLICATION = "music21_platform.wsgi.application"
ASGI_APPLICATION = "music21_platform.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Data -------------------------------------------------------------------------------------------------------

_database_url = env_url(
    "DATABASE_URL",
    f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
    schemes=("sqlite", "postgres", "postgresql", "pgsql", "psql"),
)
try:
    DATABASES = {"default": _env.db_url_config(_database_url)}
except (ImproperlyConfigured, ValueError) as exc:  # pragma: no cover - message path
    _problems.append(f"DATABASE_URL: {exc}")
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
if DATABASES["default"]["ENGINE"].endswith("sqlite3") and DATABASES["default"]["NAME"] in ("", ":memory:"):
    # sqlite:// is an in-memory database: a different, empty one for every thread's connection (tool calls run in
    # threads), so nothing migrated or stored would be seen. (PostgreSQL without a name may take it from PGDATABASE.)
    _problems.append(f"DATABASE_URL: names no database file (sqlite:///path/to/db.sqlite3), got {_database_url!r}")
# PostgreSQL's connection pool (below; its size with the product limits, from which it follows): the idle time
# after which it closes a connection it has spare, how long a thread waits for a connection.
DB_POOL_MAX_IDLE = env_number("DB_POOL_MAX_IDLE", 10.0, kind=float, minimum=0, strict_min=True)
DB_POOL_TIMEOUT = env_number("DB_POOL_TIMEOUT", 2.0, kind=float, minimum=0, strict_min=True)
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Several threads (uvicorn, worker threads for music21) share one file: wait for locks instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    # A transaction that reads then writes (the audit sealer) must take the write lock at its start: a deferred
    # transaction upgrading its lock while another writes fails at once with "database is locked".
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
    # Write-ahead logging: readers never wait for the writer, and a commit (one per audited call) costs an append,
    # not a journal rewrite and two fsyncs. NORMAL sync survives any crash of the process.
    DATABASES["default"]["OPTIONS"]["init_command"] = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    # Keep each thread's connection (tool calls run on reused worker threads) instead of reopening it per call.
    DATABASES["default"]["CONN_MAX_AGE"] = env_number("DB_CONN_MAX_AGE", 600)
    # Tests start server subprocesses (mcp_stdio) that must see the test database: keep it in a file.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / ".test-db.sqlite3")}
else:
    # One pool of connections per process (psycopg's, through Django's "pool" option), whatever its threads: a
    # thread takes a connection for one request, call or task (apps.core.db) and gives it back. So a
    # process never holds more than DB_POOL_MAX_SIZE connections, and keeps none it does not use: every
    # DB_POOL_MAX_IDLE seconds in which the pool had a connection to spare, it closes one (down to none); none is
    # kept past DB_CONN_MAX_AGE. A thread finding them all taken waits up to DB_POOL_TIMEOUT, then its request
    # fails as `unavailable`, which is also what every request gets after that wait while PostgreSQL refuses
    # connections (docs/operations.md).
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # a connection goes back to the pool, not closed (the pool needs 0)
    # Django's backend, but a connection taken from the pool that the server may have cut while it was idle (its
    # socket has something to read: PostgreSQL's goodbye) is first asked whether it still works (an empty query),
    # so that a cut one is replaced there, not discovered by the request's first query; after a dead one, every
    # idle connection is checked at once (a database restart cuts them all). The backend does the checking:
    # Django's own health check would hand it to the pool, whose check backs off between dead connections.
    DATABASES["default"]["ENGINE"] = "apps.core.postgresql"
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 0,
        "max_size": 1,  # DB_POOL_MAX_SIZE, below
        "max_idle": DB_POOL_MAX_IDLE,
        "max_lifetime": env_number("DB_CONN_MAX_AGE", 600.0, kind=float, minimum=0, strict_min=True),
        "timeout": DB_POOL_TIMEOUT,
        # A failed connection attempt is tried once more after this long, then given up, so that the next request
        # after the database is back connects at once instead of waiting out the pool's exponential backoff.
        "reconnect_timeout": 0.5,
    }
    # Prepared statements: a query run on a connection for the fifth time is prepared on the server, and later
    # runs skip parsing and planning (0.24 ms of planning for the score lookup every tool call makes, which runs
    # in 0.02). Needs server-side parameter binding. Django leaves both off for transaction-pooling proxies:
    # behind PgBouncer, use 1.21 or later with max_prepared_statements set (deploy/README.md).
    DATABASES["default"]["OPTIONS"].setdefault("server_side_binding", True)
    DATABASES["default"]["OPTIONS"].setdefault("prepare_threshold", 5)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Not unix://: Celery's broker and result backend, which follow REDIS_URL, do not read it.
REDIS_URL = env_url("REDIS_URL", None, schemes=("redis", "rediss"))
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "apps.core.cache.RedisCache",  # one connection pool per process
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "m21",
            # Seconds to connect and to wait for each reply (apps.core.redis.TIMEOUT): a frozen Redis
            # otherwise holds a call for redis-py's default of 5 s per command. Every Redis client has them.
            "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": 0.25},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "music21"}}

# --- Celery -----------------------------------------------------------------------------------------------------

CELERY_BROKER_URL = env_url("CELERY_BROKER_URL", REDIS_URL, schemes=("redis", "rediss", "amqp"))
if CELERY_BROKER_URL and not REDIS_URL:
    # The results (a corpus job's chunks, read back as they finish) are kept in Redis whatever the broker.
    _problems.append("CELERY_BROKER_URL: needs REDIS_URL as well (task results are kept there)")
# Without a broker, tasks run in the calling process: the embedded default for a laptop and for tests.
CELERY_TASK_ALWAYS_EAGER = CELERY_BROKER_URL is None
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = REDIS_URL
# The result backend's client (a corpus job's progress is read from it) fails within a second on a frozen Redis.
CELERY_REDIS_SOCKET_TIMEOUT = 0.5
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = 0.5
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_TIME_LIMIT = 60 * 30
CELERY_TASK_SOFT_TIME_LIMIT = 60 * 29
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # A late-acknowledged task (analyze_corpus's chunks) still unacknowledged after this long is delivered again:
    # that is how a chunk held by a worker that died comes back. Above the chunks' hard time limit (150 s,
    # apps/tools/tasks.py), so a chunk that is only slow is never run twice; no task uses an ETA or a countdown
    # (those wait unacknowledged too, and would need it raised). Each worker looks for such chunks every 10 s.
    "visibility_timeout": 180,
    "unacked_restore_throttle": 1,
    # A broker that stops answering without closing the connection fails a publish instead of hanging it (kombu's
    # own advice). Not below a second: a worker's BRPOP waits a second for work.
    "socket_timeout": 5,
    "socket_connect_timeout": 2,
}
# Periodic tasks (retention, due privacy requests, audit sealing) live in the database, editable in the admin.
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "celery")

# --- Product limits ---------------------------------------------------------------------------------------------

REQUIRE_AUTH = env_bool("REQUIRE_AUTH", True)
if not REQUIRE_AUTH:
    # Scores, limits and the audit trail all belong to the person behind a token: there is no call without one.
    _problems.append(
        "REQUIRE_AUTH: /mcp always requires an OAuth bearer token, so false is not supported; to use the tools "
        "without one on your own machine, run `manage.py mcp_stdio --user <name>` (README, Connecting an MCP client)"
    )
STRICT_VALIDATION = env_bool("STRICT_VALIDATION", True)
MAX_CONCURRENT_REQUESTS = env_number("MAX_CONCURRENT_REQUESTS", 50, minimum=1)
REQUEST_TIMEOUT = env_number("REQUEST_TIMEOUT", 30.0, kind=float, minimum=0, strict_min=True)
# Tool calls run in this many killable worker processes (0: in threads of the serving process, which cannot be
# stopped at the time limit, only abandoned; see apps/tools/runner.py). Processes by default outside development.
TOOL_WORKER_PROCESSES = env_number(
    "TOOL_WORKER_PROCESSES", 0 if DEPLOYMENT_ENV in ("development", "test") else (os.cpu_count() or 2)
)
# analyze_corpus runs as a background job with progress and cancellation; it has its own, longer bound.
CORPUS_JOB_TIMEOUT = env_number("CORPUS_JOB_TIMEOUT", 900.0, kind=float, minimum=0, strict_min=True)
BH_MAX_CONCURRENT_ANALYSIS = env_number("BH_MAX_CONCURRENT_ANALYSIS", 20, minimum=1)
# The share of a process's analysis capacity one user's calls may hold at once (its bulkhead slots, and its tool
# processes): the rest stays for other users (apps.core.fairness). At least one slot whatever the fraction.
BH_USER_SHARE = env_number("BH_USER_SHARE", 0.5, kind=float, minimum=0, strict_min=True)
if BH_USER_SHARE > 1:
    _problems.append(f"BH_USER_SHARE: must be at most 1 (a fraction of the capacity), got {BH_USER_SHARE!r}")
# The database connections one process holds at most (PostgreSQL's pool, DATABASES above): one for each call
# thread through its whole call (BH_MAX_CONCURRENT_ANALYSIS + 4, apps.tools.runner.call_threads), as many again
# for the tools when they run in threads of the process (TOOL_WORKER_PROCESSES = 0; a tool process has its own
# pool, in which it uses one), and 8 for token checks, security events and pages.
DB_POOL_MAX_SIZE = env_number(
    "DB_POOL_MAX_SIZE", (BH_MAX_CONCURRENT_ANALYSIS + 4) * (2 if TOOL_WORKER_PROCESSES == 0 else 1) + 8, minimum=1
)
if "pool" in DATABASES["default"].get("OPTIONS", {}):
    DATABASES["default"]["OPTIONS"]["pool"]["max_size"] = DB_POOL_MAX_SIZE
MAX_SCORES_IN_MEMORY = env_number("MAX_SCORES_IN_MEMORY", 2000, minimum=0)
# Analysis answers kept in the database for questions asked again (apps.tools.results); 0 keeps none.
ANALYSIS_RESULTS_KEPT = env_number("ANALYSIS_RESULTS_KEPT", 5000, minimum=0)
MAX_MEMORY_GB = env_number("MAX_MEMORY_GB", 8.0, kind=float, minimum=0, strict_min=True)
MAX_SCORE_BYTES = env_number("MAX_SCORE_BYTES", 5 * 1024 * 1024, minimum=1)
ENABLE_CACHING = env_bool("ENABLE_CACHING", True)
RATE_LIMIT_PER_MINUTE = env_number("RATE_LIMIT_PER_MINUTE", 100, minimum=1)
RATE_LIMIT_BURST = env_number("RATE_LIMIT_BURST", 20, minimum=0)
# Not 0: a lockout or block of no seconds ends as it starts, which would switch both off without a word.
LOCKOUT_DURATION = env_number("LOCKOUT_DURATION", 300, minimum=1)
# Prefix of the guards' keys in Redis: replicas of one deployment share it; two deployments on one Redis must not.
GUARD_NAMESPACE = env_str("GUARD_NAMESPACE", "m21") or "m21"
CB_FAILURE_THRESHOLD = env_number("CB_FAILURE_THRESHOLD", 5, minimum=1)
# Breakers count only dependency failures (apps.security.breakers), and the service should be back within a second
# of its dependency: an open breaker lets a trial call through this soon.
CB_RECOVERY_TIMEOUT = env_number("CB_RECOVERY_TIMEOUT", 0.5, kind=float, minimum=0, strict_min=True)
SECURITY_BLOCK_THRESHOLD = env_number("SECURITY_BLOCK_THRESHOLD", 20, minimum=1)
SECURITY_BLOCK_WINDOW = env_number("SECURITY_BLOCK_WINDOW", 300, minimum=1)
METRICS_ENABLED = env_bool("METRICS_ENABLED", True)
# Who may read /metrics without a token: loopback by default; add the scraper's network in a cluster.
METRICS_ALLOWED_NETWORKS = []
for _cidr in _env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.0/8", "::1/128"]):
    try:
        METRICS_ALLOWED_NETWORKS.append(ipaddress.ip_network(_cidr.strip(), strict=False))
    except ValueError:
        _problems.append(f"METRICS_ALLOWED_NETWORKS: {_cidr!r} is not a network such as 10.0.0.0/8")
METRICS_TOKEN = env_str("METRICS_TOKEN")
# prometheus_client reads PROMETHEUS_MULTIPROC_DIR itself when the metrics are declared: a missing folder would fail
# there, in a traceback.
_multiproc_dir = env_str("PROMETHEUS_MULTIPROC_DIR")
if _multiproc_dir and not Path(_multiproc_dir).is_dir():
    _problems.append(f"PROMETHEUS_MULTIPROC_DIR: {_multiproc_dir!r} is not a directory")
# A Celery worker's own /metrics (music21_platform/celery.py); 0: none.
WORKER_METRICS_PORT = env_number("WORKER_METRICS_PORT", 0, minimum=1)
if WORKER_METRICS_PORT > 65535:
    _problems.append(f"WORKER_METRICS_PORT: must be at most 65535, got {WORKER_METRICS_PORT!r}")
OTEL_ENABLED = env_bool("OTEL_ENABLED", False)
if OTEL_ENABLED:
    # The OpenTelemetry SDK reads it itself, and would only log a failed export per batch of spans.
    env_url("OTEL_EXPORTER_OTLP_ENDPOINT", None, schemes=("http", "https"))
AUDIT_LOG_ENABLED = env_bool("AUDIT_LOG_ENABLED", True)
if not AUDIT_LOG_ENABLED and DEPLOYMENT_ENV in ("staging", "production"):
    # The product promises that every tool call is in the audit trail (the compliance reports are built from it).
    _problems.append(
        f"AUDIT_LOG_ENABLED: every tool call must be in the audit trail in {DEPLOYMENT_ENV}, so false is refused "
        "there; remove it or set it to true (only development and test may turn the trail off)"
    )
# Seconds between writing audit events and sealing them into the hash chain (a thread per process); 0 leaves
# sealing to the periodic task and to verify_audit_chain.
AUDIT_SEAL_INTERVAL = env_number("AUDIT_SEAL_INTERVAL", 1.0, kind=float, minimum=0)
# A person's own erasure request runs after this many hours, during which they or an administrator can cancel it.
ERASURE_GRACE_HOURS = env_number("ERASURE_GRACE_HOURS", 72.0, kind=float, minimum=0)

SCORE_IMPORT_ROOT: Path | None = None
_import_root = env_str("SCORE_IMPORT_ROOT")
if _import_root:
    SCORE_IMPORT_ROOT = Path(_import_root).resolve()
    if not SCORE_IMPORT_ROOT.is_dir():
        _problems.append(f"SCORE_IMPORT_ROOT: {_import_root!r} is not a directory")

# --- OAuth 2.1 (django-oauth-toolkit) ---------------------------------------------------------------------------

OAUTH2_PROVIDER = oauth2_provider_settings(PUBLIC_URL)
# django-oauth-toolkit's own models (named explicitly so that our models' foreign keys to them resolve).
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL = "oauth2_provider.AccessToken"  # noqa: S105 - a model name
OAUTH2_PROVIDER_REFRESH_TOKEN_MODEL = "oauth2_provider.RefreshToken"  # noqa: S105 - a model name
OAUTH2_PROVIDER_GRANT_MODEL = "oauth2_provider.Grant"
OAUTH2_PROVIDER_ID_TOKEN_MODEL = "oauth2_provider.IDToken"  # noqa: S105 - a model name
# django-oauth-toolkit warns that http redirect URIs are allowed: native MCP clients receive their code on a loopback
# port (RFC 8252), and apps.security.validators refuses http to any other host.
SILENCED_SYSTEM_CHECKS = ["oauth2_provider.W008"]
OAUTH_REGISTRATIONS_PER_HOUR = env_number("OAUTH_REGISTRATIONS_PER_HOUR", 20, minimum=1)

# The privacy and compliance JSON API (Django REST framework): a signed-in session or an OAuth bearer token.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.security.permissions.BearerAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # DRF's own three, its JSON parser answering JSON nested too deeply with a 400 like other malformed JSON.
    "DEFAULT_PARSER_CLASSES": [
        "apps.core.json_input.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "apps.compliance.api.exception_handler",
}
AUDITLOG_INCLUDE_ALL_MODELS = False

# --- Web --------------------------------------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"

# Failed sign-ins (the product's login page and the admin's) lock that username from that address for
# LOCKOUT_DURATION after LOGIN_FAILURE_LIMIT failures (django-axes).
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_number("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(seconds=LOCKOUT_DURATION)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False
LOGIN_REDIRECT_URL = "/privacy/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve static files straight from the apps in development so `make run` needs no collectstatic.
WHITENOISE_USE_FINDERS = True
if DEPLOYMENT_ENV in ("development", "test"):
    # ...and so whitenoise's warning that STATIC_ROOT is missing says nothing wrong there (staging and production,
    # which collect the files, still warn).
    warnings.filterwarnings("ignore", message=re.escape(f"No directory at: {STATIC_ROOT}"), category=UserWarning)
WHITENOISE_AUTOREFRESH = DEBUG

SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Joining the browsers' preload list is hard to undo and concerns the whole domain: the operator's choice. Read (and
# a typo refused) whatever the URL, though only an https one sends HSTS.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
if PUBLIC_URL.startswith("https://"):
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # TLS ends at the proxy in front of the server, which says so in this header (deploy/).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = 365 * 24 * 3600
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    if not SECURE_HSTS_PRELOAD:
        SILENCED_SYSTEM_CHECKS.append("security.W021")
    SECURE_SSL_REDIRECT = True
    # Probes and the metrics scraper reach the pods over plain http inside the cluster, without the proxy's
    # header: they must get their answer, not a redirect to https. (/mcp never reaches Django's middleware: the
    # proxy is what keeps it on https.)
    SECURE_REDIRECT_EXEMPT = [r"^health(/|$)", r"^metrics$"]

# Staff verify their second factor against an authenticator app; its entry is named after the server.
OTP_TOTP_ISSUER = "music21 platform"

# Content-Security-Policy on every page (django-csp). Nothing is loaded from elsewhere and no inline script runs.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        # The admin's notation preview and the enrolment page's QR code are data: images.
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

# JSON lines for log collectors outside development; plain lines to read in a terminal. Any case, as LOG_LEVEL.
LOG_FORMAT = (env_str("LOG_FORMAT") or ("plain" if DEPLOYMENT_ENV in ("development", "test") else "json")).lower()
if LOG_FORMAT not in ("json", "plain"):
    _problems.append(f"LOG_FORMAT: expected json or plain (in any case), got {env_str('LOG_FORMAT')!r}")
# Any case, as Celery's --loglevel (the entrypoint and the units pass it the same variable); logging wants it upper.
LOG_LEVEL = (env_str("LOG_LEVEL", "INFO") or "INFO").upper()
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    _problems.append(f"LOG_LEVEL: expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got {env_str('LOG_LEVEL')!r}")
    LOG_LEVEL = "INFO"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "call_context": {"()": "apps.core.logs.CallContextFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "apps.core.logs.Formatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["call_context"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # The MCP SDK logs every stateless request's transport start and end at INFO, and HTTP clients every request:
    # noise that costs a formatted line per call.
    "loggers": {
        **{name: {"level": "WARNING"} for name in ("music21", "mcp", "sse_starlette", "httpx", "httpx2")},
        # uvicorn's own lines (start, stop, access, its tracebacks) in the same format, not its plain text among
        # JSON lines. Its parent process with --workers loads no Django: its few lines stay uvicorn's.
        **{name: {"handlers": ["console"], "propagate": False} for name in ("uvicorn", "uvicorn.access")},
    },
}

if _problems:
    # The operator reads these lines, not a traceback through Django's start-up: exit with them, whatever runs the
    # settings (manage.py, uvicorn, celery).
    sys.exit("Invalid configuration:\n  " + "\n  ".join(_problems))
