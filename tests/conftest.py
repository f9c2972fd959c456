from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from apps.tools.invocation import Caller, invoke_tool
from apps.tools.services.cache import parsed_scores


@pytest.fixture(autouse=True)
def _fresh_parsed_score_cache() -> None:
    parsed_scores.clear()


@pytest.fixture
def alice(db: None) -> Any:
    return get_user_model().objects.create_user("alice", "alice@example.com", "correct horse battery staple")


@pytest.fixture
def bob(db: None) -> Any:
    return get_user_model().objects.create_user("bob", "bob@example.com", "tr0ub4dor&3 but longer")


ToolCall = Callable[..., dict[str, Any]]


@pytest.fixture
def call() -> ToolCall:
    """Call a tool through the one invocation path, as `user` with every scope unless `scopes` is given."""

    def _call(user: Any, tool: str, scopes: frozenset[str] | None = None, **arguments: Any) -> dict[str, Any]:
        caller = Caller.operator(user) if scopes is None else Caller(user=user, scopes=scopes)
        return invoke_tool(tool, arguments, caller=caller)

    return _call


@pytest.fixture
def chorale(alice: Any, call: ToolCall) -> dict[str, Any]:
    """alice's import of bach/bwv66.6 as 'chorale'."""
    return call(alice, "import_score", score_id="chorale", source="bach/bwv66.6", source_type="corpus")
