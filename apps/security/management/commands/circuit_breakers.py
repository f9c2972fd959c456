"""`python manage.py circuit_breakers [--reset GROUP|all]`: show the breakers of the guard groups, or close one."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.security.breakers import breaker_reset, breaker_states
from apps.security.groups import GROUPS
from apps.security.redis import redis_degraded


class Command(BaseCommand):
    help = "Show the circuit breakers (state and consecutive failures per guard group), or reset one."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--reset", metavar="GROUP", help=f"Close this group's breaker ({', '.join(GROUPS)}, all).")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.REDIS_URL:
            # Each serving process then keeps its breakers in its own memory, out of this process's reach.
            raise CommandError(
                "Without REDIS_URL each serving process keeps its own breakers, which this command cannot see or "
                "reset: use the admin's page /admin/security/breakers/ of the server."
            )
        group = options["reset"]
        if group:
            if group != "all" and group not in GROUPS:
                raise CommandError(f"Unknown group {group!r}; use one of: {', '.join(GROUPS)}, all.")
            for name in GROUPS if group == "all" else [group]:
                breaker_reset(name)
        states = breaker_states()
        if redis_degraded():
            # The breakers the serving processes obey are in Redis: what this process read or reset is its own.
            raise CommandError(
                f"Redis at {settings.REDIS_URL} is unreachable: the shared breakers could not be "
                f"{'reset' if group else 'read'}; until it is back each serving process keeps its own."
            )
        if group:
            self.stdout.write(f"reset: {group}")
        for name, state in states.items():
            self.stdout.write(f"{name:16} {state['state']:10} failures={state['failures']}")
