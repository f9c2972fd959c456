from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from apps.compliance.services import subject_requests_run_due


class Command(BaseCommand):
    help = "Run every data-subject request whose time has come (what the periodic task does; for cron without beat)."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(f"{subject_requests_run_due()} request(s) run.")
