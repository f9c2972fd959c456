"""`python manage.py mcp_stdio --user USERNAME`: the same MCP tools over stdio, acting as that user.

For desktop clients (Claude Desktop and the like) that start the server as a subprocess. Whoever can run this
command can act as any user, as with `call_tool`: it is an operator's tool, with every scope.
"""

from __future__ import annotations

from typing import Any

import anyio
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from mcp.server.stdio import stdio_server

from apps.core.db import database_problem
from apps.mcp_bridge.server import build_server
from apps.tools.invocation import Caller


class Command(BaseCommand):
    help = "Serve the music21 MCP tools over stdio as USERNAME."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", required=True, help="Username the tools act for (the owner of the scores).")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = get_user_model().objects.get(username=options["user"], is_active=True)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No active user {options['user']!r}; create one with createsuperuser.") from None
        except DatabaseError as exc:
            raise CommandError(database_problem(exc)) from None

        async def identify(ctx: Any) -> Caller:
            return Caller.operator(user, transport="mcp-stdio")  # a fresh request id per call

        server = build_server(identify=identify)

        async def serve() -> None:
            async with stdio_server() as (read_stream, write_stream):
                await server.run(read_stream, write_stream, server.create_initialization_options())

        anyio.run(serve)
