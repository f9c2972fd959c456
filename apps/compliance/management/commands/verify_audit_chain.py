from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from apps.compliance.audit import audit_verify
from apps.core.db import database_problem


class Command(BaseCommand):
    help = (
        "Verify the audit trail's hash chain: exit 0 with the count verified, or exit 1 naming the first broken link."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--no-seal", action="store_true", help="Verify only; do not seal new events first.")

    def handle(self, *args: Any, no_seal: bool = False, **options: Any) -> None:
        try:
            report = audit_verify(seal_first=not no_seal)
        except DatabaseError as exc:
            raise CommandError(database_problem(exc)) from None
        if not report.ok:
            where = f"audit event id {report.broken_event_id} " if report.broken_event_id else ""
            raise CommandError(
                f"Audit chain broken at {where}(position {report.broken_seq}): {report.problem}. "
                f"{report.verified} events before it verified."
            )
        suffix = f" ({report.unsealed} not yet sealed)" if report.unsealed else ""
        self.stdout.write(f"Audit chain intact: {report.verified} events verified{suffix}.")
