"""The audit-event admin list with 1,000,000 rows in PostgreSQL: how long each page an administrator opens takes.

Runs on a database of its own (created next to the one DATABASE_URL names, dropped afterwards), so it never
touches real data:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test python bench/audit_admin.py [--rows N]

`make bench` runs it when DATABASE_URL is a PostgreSQL URL.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [
    ("list, newest first", "/admin/compliance/auditevent/"),
    ("page 500", "/admin/compliance/auditevent/?p=500"),
    ("filter outcome", "/admin/compliance/auditevent/?outcome=not_found"),
    ("filter action", "/admin/compliance/auditevent/?action=tool.key_analysis"),
    ("search request id", "/admin/compliance/auditevent/?q=c4ca4238a0b923820dcc509a6f75849b"),
    ("search target", "/admin/compliance/auditevent/?q=score:s123"),
    ("one event", None),
]


def _populate(rows: int) -> None:
    from django.db import connection

    # Generated in the database: a million ORM saves would measure the loader, not the admin. The secondary
    # indexes are dropped for the load and built again after it, which is quicker than updating 16 indexes
    # row by row; the admin then meets the same indexes.
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'compliance_auditevent'
            AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = 'compliance_auditevent'::regclass)
            """
        )
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute(
            """
            INSERT INTO compliance_auditevent
                (created_at, actor, client_id, action, target, outcome, duration_ms, ip, request_id, transport,
                 detail, seq, prev_hash, hash)
            SELECT now() - (g * interval '1 second'),
                   md5((g %% 5000)::text)::varchar(32),
                   'client-' || (g %% 50),
                   (ARRAY['tool.key_analysis','tool.score_info','tool.chord_analysis','tool.import_score',
                          'auth.login'])[1 + g %% 5],
                   'score:s' || (g %% 20000),
                   CASE WHEN g %% 50 = 0 THEN 'not_found' WHEN g %% 97 = 0 THEN 'timeout' ELSE 'success' END,
                   (g %% 200) / 10.0,
                   '',
                   md5(g::text),
                   'mcp-http',
                   '{}'::jsonb,
                   NULL, '', ''
            FROM generate_series(1, %s) AS g
            """,
            [rows],
        )
        cursor.execute("SET maintenance_work_mem = '256MB'")
        for _, definition in indexes:
            cursor.execute(definition)
        cursor.execute("ANALYZE compliance_auditevent")


def _measure(rows: int, repeat: int) -> list[tuple[str, float, float]]:
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from apps.compliance.models import AuditEvent

    admin = get_user_model().objects.create_superuser("bench-admin", "b@example.com", "a long bench password 1")
    client = Client(HTTP_HOST="127.0.0.1")  # a host ALLOWED_HOSTS accepts
    client.force_login(admin)
    # The admin takes staff sessions verified by their second factor (apps.security.staff_otp): as if the
    # administrator had given the code of an enrolled authenticator app.
    device = TOTPDevice.objects.create(user=admin, name="bench", confirmed=True)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    one = AuditEvent.objects.order_by("id")[rows // 2]
    results = []
    for label, url in PAGES:
        url = url or f"/admin/compliance/auditevent/{one.pk}/change/"
        times = []
        for _ in range(repeat + 1):
            started = time.perf_counter()
            response = client.get(url)
            times.append(time.perf_counter() - started)
            assert response.status_code == 200, (url, response.status_code)
        times = sorted(times[1:])  # the first request warms the caches
        results.append((label, times[len(times) // 2] * 1000, times[-1] * 1000))
    return results


def child(rows: int, repeat: int) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "music21_platform.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    _populate(rows)
    print(f"(loaded {rows:,} audit events in {time.perf_counter() - started:.1f} s)")
    print(f"\n### Audit-event admin with {rows:,} rows (PostgreSQL)\n")
    print("| page | p50 ms | max ms |\n|---|---|---|")
    for label, p50, worst in _measure(rows, repeat):
        print(f"| {label} | {p50:.1f} | {worst:.1f} |")


def run(rows: int = 1_000_000, repeat: int = 5) -> None:
    """Create a scratch database beside DATABASE_URL's, measure in a child process, drop it."""
    import psycopg

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        print("\n(audit admin benchmark skipped: it needs DATABASE_URL to name a PostgreSQL server)")
        return
    server, _, _ = url.rpartition("/")
    scratch = f"bench_audit_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{scratch}"')
    try:
        subprocess.run(  # noqa: S603 - our own interpreter
            [sys.executable, __file__, "--child", "--rows", str(rows), "--repeat", str(repeat)],
            env={**os.environ, "DATABASE_URL": f"{server}/{scratch}", "AUDIT_SEAL_INTERVAL": "0"},
            check=True,
        )
    finally:
        with psycopg.connect(url.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.rows, args.repeat)
    else:
        run(args.rows, args.repeat)
