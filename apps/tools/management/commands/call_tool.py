"""`python manage.py call_tool TOOL --user USERNAME --args JSON`: one tool call, as that user, on the shared path."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from apps.core.db import database_problem
from apps.core.errors import ApplicationError
from apps.core.json_input import json_parse
from apps.tools.invocation import Caller, invoke_tool
from apps.tools.registry import TOOLS


class Command(BaseCommand):
    help = "Call a music21 tool as a user and print its JSON result (exit 1 with the error on stderr on failure)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tool", nargs="?", help="Tool name; omit with --list.")
        parser.add_argument("--user", help="Username to act as (the owner of the scores).")
        parser.add_argument("--args", dest="arguments", default="{}", help="Tool arguments as a JSON object.")
        parser.add_argument("--list", action="store_true", help="List the tools and their scopes.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["list"]:
            for tool in TOOLS.values():
                self.stdout.write(f"{tool.name:24} {tool.scope or '-':15} {tool.group}")
            return
        if not options["tool"] or not options["user"]:
            raise CommandError("Give a tool name and --user USERNAME (or --list).")
        try:
            arguments = json_parse(options["arguments"])
        except json.JSONDecodeError as exc:
            raise CommandError(
                f"invalid_arguments: --args is not valid JSON ({exc.msg} at column {exc.colno})."
            ) from None
        except ValueError as exc:
            raise CommandError(f"invalid_arguments: --args is not valid JSON ({exc}).") from None
        try:
            # A deactivated account (blocked, or on its way out) acts for nobody, here as over HTTP and stdio.
            user = get_user_model().objects.get(username=options["user"], is_active=True)
        except get_user_model().DoesNotExist:
            raise CommandError(f"not_found: no active user {options['user']!r}.") from None
        except DatabaseError as exc:
            raise CommandError(f"unavailable: {database_problem(exc)}") from None
        try:
            result = invoke_tool(options["tool"], arguments, caller=Caller.operator(user))
        except ApplicationError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None
        self.stdout.write(json.dumps(result, indent=2, ensure_ascii=False))
