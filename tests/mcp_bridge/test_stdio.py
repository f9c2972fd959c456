"""The same conversation over stdio, with the SDK's stdio client starting `manage.py mcp_stdio`."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import anyio
import pytest
from django.conf import settings
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from apps.tools.registry import TOOLS
from tests.support import manage_py, subprocess_database_url


@pytest.mark.django_db(transaction=True)
def test_stdio_serves_the_same_tools_as_the_named_user(mcp_mode: str, alice: Any) -> None:
    server = StdioServerParameters(
        command=sys.executable,
        args=["manage.py", "mcp_stdio", "--user", "alice"],
        env={**os.environ, "DATABASE_URL": subprocess_database_url()},
        cwd=str(settings.BASE_DIR),
    )

    async def conversation() -> None:
        async with Client(server, mode=mcp_mode) as session:
            assert {t.name for t in (await session.list_tools()).tools} == set(TOOLS)
            imported = await session.call_tool(
                "import_score", {"score_id": "chorale", "source": "bach/bwv66.6", "source_type": "corpus"}
            )
            assert not imported.is_error
            key = await session.call_tool("key_analysis", {"score_id": "chorale"})
            assert key.structured_content["key"] == "F# minor"

    anyio.run(conversation)
    assert alice.scores.get(score_id="chorale").notes_count == 165  # stored for alice, in the same database


def test_stdio_refuses_an_unknown_user(db: None) -> None:
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No active user 'nobody'"):
        call_command("mcp_stdio", user="nobody")


def test_stdio_on_a_database_not_yet_migrated_says_so_in_one_line(tmp_path: Any) -> None:
    result = manage_py(
        "mcp_stdio",
        "--user",
        "alice",
        env={**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'new.sqlite3'}"},
        stdin=subprocess.DEVNULL,
    )

    assert result.returncode == 1
    assert result.stderr.startswith("CommandError: cannot read the database (no such table: auth_user)")
    assert "Traceback" not in result.stderr
