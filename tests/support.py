"""Helpers the tests share: a free port, a redis-server of a test's own, the test database's URL for server
subprocesses, code run in another process of the same deployment, staff with their second factor, signed in, and
the test's own database work while a browser is driven."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from apps.core.db import with_connections

# Page tests drive Debian's Chromium (never a browser download) and keep their screenshots here.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts"
# What the machine's closed network needs: no background connections to Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

ADMIN_PASSWORD = "a long admin password 1"

# A 300-byte MusicXML whose one note lasts a hundred million quarter notes: music21 reads it at once, but writes it
# back out (export, render, transpose) as 25 million bars, for ever, taking memory without end. Import refuses it
# (apps.tools.services.parsing.MAX_OVERFULL_BARS); a score stored before that check still holds it (`stored_as_is`).
ENDLESS_NOTE_MUSICXML = (
    '<score-partwise><part-list><score-part id="P1"><part-name>M</part-name></score-part></part-list>'
    '<part id="P1"><measure number="1"><attributes><divisions>1</divisions></attributes>'
    "<note><pitch><step>C</step><octave>4</octave></pitch><duration>99999999</duration></note>"
    "</measure></part></score-partwise>"
)


def stored_as_is(owner: Any, score_id: str, musicxml: str) -> Any:
    """`musicxml` stored as `owner`'s score `score_id` without import's checks, as a row stored by an earlier
    version that did not refuse it yet: rows outlive the checks of the version that wrote them."""
    from apps.tools.models import Score, SourceFormat

    return Score.objects.create(
        owner=owner,
        score_id=score_id,
        source_format=SourceFormat.MUSICXML,
        source_text=musicxml,
        content_sha256=hashlib.sha256(musicxml.encode()).hexdigest(),
        parts_count=1,
        measures_count=1,
        notes_count=1,
    )


T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OwnRedis:
    """A redis-server of this test's own, which the test can freeze, thaw and kill."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(  # noqa: S603 - the redis-server of this machine
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],  # noqa: S607
            stdout=subprocess.DEVNULL,
        )
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.1):
                    return
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError("redis-server did not start")

    def freeze(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)  # a stopped process dies only once it runs again
            self.process.kill()
        self.process.wait(timeout=10)


def manage_py(*arguments: str, env: dict[str, str], **options: Any) -> subprocess.CompletedProcess[str]:
    """`manage.py` with `arguments` in a fresh interpreter, with the environment `env` (whole, not added to this
    one's), its output captured as text, its exit status left for the test to read."""
    return subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "manage.py", *arguments],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        **options,
    )


def subprocess_database_url() -> str:
    """The URL of the database this test runs on, for a server or worker subprocess."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        if connection.is_in_memory_db():
            pytest.fail("server subprocesses need a file-based SQLite test database (see DATABASES TEST NAME)")
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def in_another_process(code: str) -> None:
    """Run `code`, once Django is set up, in a fresh interpreter that shares this test's database, cache keys and
    guard namespace: another server of the same deployment, or an administrator's shell."""
    cache_prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
    script = (
        "import django\n"
        "from django.conf import settings\n"
        f"settings.CACHES['default']['KEY_PREFIX'] = {cache_prefix!r}\n"
        "django.setup()\n"
    ) + code
    subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", script],
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "music21_platform.settings",
            "DATABASE_URL": subprocess_database_url(),
            "GUARD_NAMESPACE": settings.GUARD_NAMESPACE,
        },
        cwd=settings.BASE_DIR,
        check=True,
        timeout=120,
    )


def totp_device(user: Any) -> Any:
    """The person's confirmed authenticator app (django-otp TOTP device), if any."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    return TOTPDevice.objects.devices_for_user(user, confirmed=True).first()


def totp_code(device: Any) -> str:
    """The code the authenticator app holding `device`'s secret shows now."""
    from django_otp.oath import TOTP

    # A code is accepted once (django-otp remembers the last time step used), and a test may sign the same person
    # in twice within one 30 s step: forget the step used, as waiting for the app's next code would.
    type(device).objects.filter(pk=device.pk).update(last_t=-1)
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return f"{totp.token():0{device.digits}d}"


def signed_in(user: Any) -> Client:
    """A client signed in as `user`; a staff member's session is also verified by their second factor."""
    from django_otp import DEVICE_ID_SESSION_KEY

    client = Client()
    client.force_login(user)
    device = totp_device(user) if user.is_staff else None
    if device is not None:
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session.save()
    return client


def totp_device_add(user: Any) -> Any:
    """Gives `user` a confirmed authenticator app (as if enrolled); returns the user."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
    return user


def superuser(username: str = "root") -> Any:
    """A superuser with the password ADMIN_PASSWORD and an enrolled authenticator app."""
    return totp_device_add(
        get_user_model().objects.create_superuser(username, f"{username}@example.com", ADMIN_PASSWORD)
    )


def staff_user(username: str, **fields: Any) -> Any:
    """A staff member (no permissions unless given) with the password ADMIN_PASSWORD and an enrolled authenticator
    app."""
    return totp_device_add(
        get_user_model().objects.create_user(
            username, f"{username}@example.com", ADMIN_PASSWORD, **{"is_staff": True, **fields}
        )
    )


def browser_sign_in(page: Any, url: str, *, username: str, password: str) -> None:
    """Signs in through the page at `url` (a login form, or a page that redirects to one), as a person would, and
    gives the code from their authenticator app when a staff page asks for it."""
    page.goto(url)
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("form [type=submit]")
    page.wait_for_load_state()
    if page.locator("#id_otp_token").count():
        device = beside_the_browser(lambda: totp_device(get_user_model().objects.get_by_natural_key(username)))
        if device is not None:
            page.fill("#id_otp_token", beside_the_browser(totp_code, device))
            page.click("main form [type=submit]")
            page.wait_for_load_state()


def eventually(condition: Callable[[], Any], seconds: float = 10, every: float = 0.05) -> bool:
    """Whether `condition()` comes true within `seconds`, asked every `every` seconds."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


def pool_connections_in_use() -> int:
    """The connections this process has taken from PostgreSQL's pool and not given back (0 on SQLite: no pool)."""
    if connection.vendor != "postgresql":
        return 0
    stats = connection.pool.get_stats()
    return int(stats["pool_size"] - stats["pool_available"])


def database_superuser() -> Any:
    """A psycopg connection (autocommit) of PostgreSQL's superuser to the `postgres` database, beside the test's."""
    import psycopg

    database = connection.settings_dict
    host, port = database["HOST"] or None, database["PORT"] or None
    return psycopg.connect(host=host, port=port, user="postgres", dbname="postgres", autocommit=True)


def database_sessions_cut(admin: Any = None) -> int:
    """Cut every session of the test database but `admin`'s own (a `database_superuser()` connection, else one
    opened for this), as a restart of PostgreSQL would; how many were cut."""
    if admin is None:
        with database_superuser() as own:
            return database_sessions_cut(own)
    return len(
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [connection.settings_dict["NAME"]],
        ).fetchall()
    )


def beside_the_browser(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)`, a test's own database work while Playwright drives a browser, on a thread of its own.

    Playwright's sync API keeps an event loop running on the test's thread, and while a loop runs there Django gives
    the thread a second set of database connections (asgiref's thread-critical local follows the loop's context).
    Nothing closes those: pytest-django and `close_old_connections` only see the first set. One would stay checked
    out of the pool from the first browser test to the end of the session, and die unnoticed when a fault test cuts
    the database's sessions, failing the next browser test's read. On its own thread the work takes a connection
    and gives it back, and Django's refusal of database calls from an event loop stays on for the test's thread
    (DJANGO_ALLOW_ASYNC_UNSAFE is never set)."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(with_connections, function, *args).result()
