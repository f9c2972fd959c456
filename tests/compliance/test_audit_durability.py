"""No tool call is answered without its audit event: when the trail cannot be written, the call fails `unavailable`.

The audit table is made to refuse rows with a real database trigger (SQLite and PostgreSQL), as a full disk, a
read-only replica or a permissions change would, while everything else the call needs still works."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from io import StringIO
from typing import Any

import anyio
import pytest
from django.core.management import call_command
from django.db import connection

from apps.compliance.models import AuditEvent
from apps.core.errors import ServiceUnavailable
from apps.tools.invocation import Caller, invoke_tool
from apps.tools.models import Score
from tests.mcp_bridge.conftest import mcp_session

TRIGGER = "m21_test_audit_refuses_rows"


@contextlib.contextmanager
def audit_table_refuses_rows() -> Iterator[None]:
    """Every INSERT into the audit table fails in the database itself until the block ends."""
    table = connection.ops.quote_name(AuditEvent._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"CREATE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'the audit table refuses rows (test)'; END $$"
            )
            cursor.execute(
                f"CREATE TRIGGER {TRIGGER} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {TRIGGER}()"
            )
        else:
            cursor.execute(
                f"CREATE TRIGGER {TRIGGER} BEFORE INSERT ON {table} "
                "BEGIN SELECT RAISE(ABORT, 'the audit table refuses rows (test)'); END"
            )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(f"DROP TRIGGER IF EXISTS {TRIGGER} ON {table}")
                cursor.execute(f"DROP FUNCTION IF EXISTS {TRIGGER}()")
            else:
                cursor.execute(f"DROP TRIGGER IF EXISTS {TRIGGER}")


def _tool_events(action: str) -> list[tuple[str, str]]:
    return list(AuditEvent.objects.filter(action=action).order_by("id").values_list("outcome", "request_id"))


def _verified() -> str:
    out = StringIO()
    call_command("verify_audit_chain", stdout=out)
    return out.getvalue()


def test_a_read_call_that_cannot_be_recorded_is_not_answered_with_its_result(chorale: Any, alice: Any) -> None:
    delivered: list[Any] = []
    caller = Caller(user=alice, scopes=frozenset({"music21:read"}), answer=delivered.append)
    with audit_table_refuses_rows(), pytest.raises(ServiceUnavailable) as refused:
        invoke_tool("score_info", {"score_id": "chorale"}, caller=caller)

    assert refused.value.code == "unavailable"
    message = str(refused.value)
    assert "not delivered" in message and "could not be recorded" in message and "nothing was changed" in message
    assert caller.request_id in message
    # A transport answering through `Caller.answer` gets the same refusal, never the score's details.
    assert delivered == [refused.value]
    assert _tool_events("tool.score_info") == []


def test_a_write_call_that_cannot_be_recorded_says_the_change_was_made(alice: Any, call: Any) -> None:
    with audit_table_refuses_rows(), pytest.raises(ServiceUnavailable) as refused:
        call(alice, "import_score", score_id="c", source="bach/bwv66.6", source_type="corpus")

    message = str(refused.value)
    assert "could not be recorded" in message and "the change was made" in message
    # What the message says is true: the score is stored, and the next call can use it.
    assert Score.objects.filter(owner=alice, score_id="c").exists()
    assert call(alice, "score_info", score_id="c")["notes"] == 165


def test_once_the_trail_accepts_rows_again_every_call_is_in_it_and_the_chain_verifies(
    chorale: Any, alice: Any, call: Any
) -> None:
    with audit_table_refuses_rows():
        for _ in range(3):
            with pytest.raises(ServiceUnavailable):
                call(alice, "score_info", score_id="chorale")

    callers = [Caller(user=alice, scopes=frozenset({"music21:read"})) for _ in range(3)]
    for caller in callers:
        assert invoke_tool("score_info", {"score_id": "chorale"}, caller=caller)["status"] == "success"

    assert _tool_events("tool.score_info") == [("success", caller.request_id) for caller in callers]
    assert f"{AuditEvent.objects.count()} events verified" in _verified()


@pytest.mark.parametrize("mcp_mode", ["auto", "legacy"])  # both protocol eras, as tests/mcp_bridge/conftest.py
def test_over_mcp_a_call_that_cannot_be_recorded_is_a_tool_error_unavailable(
    mcp_mode: str, live_site: str, alice: Any, chorale: Any, token_for: Any
) -> None:
    token = token_for(alice)

    async def score_info() -> Any:
        async with mcp_session(live_site, token, mcp_mode) as session:
            return await session.call_tool("score_info", {"score_id": "chorale"})

    with audit_table_refuses_rows():
        refused = anyio.run(score_info)
    assert refused.is_error
    assert refused.content[0].text.startswith("unavailable: ")
    assert "could not be recorded" in refused.content[0].text
    assert refused.structured_content["error"] == "unavailable"
    assert "notes" not in refused.structured_content and "165" not in refused.content[0].text
    assert [e.outcome for e in AuditEvent.objects.filter(transport="mcp-http")] == []

    answered = anyio.run(score_info)
    assert not answered.is_error and answered.structured_content["notes"] == 165
    events = AuditEvent.objects.filter(transport="mcp-http", action="tool.score_info")
    assert [e.outcome for e in events] == ["success"]  # in the trail already when the client had its answer
    assert f"{AuditEvent.objects.count()} events verified" in _verified()
