from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from apps.compliance.retention import retention_apply
from apps.core.db import database_problem


class Command(BaseCommand):
    help = "Delete what is older than its retention policy (in batches) and record the run."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count what would be removed; remove nothing.")

    def handle(self, *args: Any, dry_run: bool = False, **options: Any) -> None:
        try:
            run = retention_apply(dry_run=dry_run)
        except DatabaseError as exc:
            raise CommandError(database_problem(exc)) from None
        verb = "would remove" if dry_run else "removed"
        for category, rows in sorted(run.removed.items()):
            self.stdout.write(f"{category}: {verb} {rows}")
        self.stdout.write(f"Retention run {run.pk}: {verb} {run.total} rows in {run.duration_ms:.0f} ms.")
