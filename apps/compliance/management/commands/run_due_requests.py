from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from apps.compliance.services import subject_requests_run_due
from apps.compliance.services.requests import DueRequestsFailed
from apps.core.db import database_problem


class Command(BaseCommand):
    help = "Run every data-subject request whose time has come (what the periodic task does; for cron without beat)."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            count = subject_requests_run_due()
        except DatabaseError as exc:
            raise CommandError(database_problem(exc)) from None
        except DueRequestsFailed as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{count} request(s) run.")
