"""With tools in threads (TOOL_WORKER_PROCESSES = 0, as `make run` serves them), a call past its time limit runs on
in its thread, which cannot be killed: it must not store or delete a score after its caller was told it stopped,
and a caller whose score was stored before the limit is told so (apps.tools.gate)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from apps.core.errors import TimedOut
from apps.tools.gate import CallGate
from apps.tools.models import Score
from apps.tools.registry import TOOLS
from apps.tools.services import scores

SOURCE = "tinyNotation: 4/4 c4 d e f g1"


@pytest.fixture
def short_limit(settings: Any) -> None:
    settings.TOOL_WORKER_PROCESSES = 0
    setattr(settings, TOOLS["import_score"].timeout_setting, 0.5)


@pytest.fixture
def held(monkeypatch: Any) -> Iterator[threading.Event]:
    """The import's work held, before its score is stored, until the test lets it go (a real parse that takes just
    longer than the limit is not to be had on a shared machine); set once the test is done in any case."""
    go = threading.Event()
    summary = scores.score_summary
    monkeypatch.setattr(scores, "score_summary", lambda music: (go.wait(10), summary(music))[1])
    yield go
    go.set()


def _watched(monkeypatch: Any) -> threading.Event:
    """Set once the import's thread has been through the gate of its change, let through or not."""
    through = threading.Event()
    gate = scores.changing

    @contextlib.contextmanager
    def watched() -> Iterator[None]:
        try:
            with gate():
                yield
        finally:
            through.set()

    monkeypatch.setattr(scores, "changing", watched)
    return through


def test_an_import_past_its_time_limit_never_stores_its_score(
    short_limit: None, held: threading.Event, alice: Any, call: Any, monkeypatch: Any
) -> None:
    through = _watched(monkeypatch)
    with pytest.raises(TimedOut, match="and was stopped"):
        call(alice, "import_score", score_id="late", source=SOURCE, source_type="tinynotation")
    held.set()  # the thread goes on with the import, as it would have after a long parse
    assert through.wait(10)
    assert not Score.objects.filter(owner=alice, score_id="late").exists()
    # The id is free, and the same import within the limit stores it.
    assert call(alice, "import_score", score_id="late", source=SOURCE, source_type="tinynotation")["notes"] == 5


def test_a_call_whose_score_was_stored_before_its_limit_is_told_so(
    short_limit: None, alice: Any, call: Any, monkeypatch: Any
) -> None:
    go = threading.Event()
    monkeypatch.setattr(scores, "FILES_PROCESSED", SimpleNamespace(inc=lambda: go.wait(10)))  # after the store
    try:
        with pytest.raises(TimedOut, match=r"had been made: look at your scores \(list_scores\)"):
            call(alice, "import_score", score_id="kept", source=SOURCE, source_type="tinynotation")
    finally:
        go.set()
    assert Score.objects.filter(owner=alice, score_id="kept").exists()


def test_a_gate_lets_a_change_through_until_it_is_closed_and_says_whether_one_was_made() -> None:
    gate = CallGate()
    with gate.change():
        pass
    assert gate.close() is True
    closed = CallGate()
    assert closed.close() is False
    with pytest.raises(TimedOut), closed.change():
        pytest.fail("a change through a closed gate")
