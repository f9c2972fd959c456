"""How the admin shows what the trail records: humane durations, counts and JSON, and the actions the apps above
compliance audit. Kept apart from admin.py so that the dashboard (imported by the admin site itself) needs no
ModelAdmin module."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from django.utils.html import format_html

_audited_elsewhere: list[Callable[[], Iterable[str]]] = []


def audit_actions_register(actions: Callable[[], Iterable[str]]) -> None:
    """An app above compliance names the actions it audits, for the audit list's action filter and the dashboard's
    tool table (the tools: one per tool). A callable, read each time: the admin is imported before the apps'
    ready() fill their registries."""
    _audited_elsewhere.append(actions)


def audited_actions() -> list[str]:
    """The actions the apps above compliance registered (audit_actions_register)."""
    return [action for actions in _audited_elsewhere for action in actions()]


def duration_humane(ms: float | None) -> str:
    """A duration as a person reads it: "0.4 ms", "12 ms", "1.4 s", "2 min 5 s"."""
    if ms is None:
        return ""
    if ms < 10:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(round(ms / 1000), 60)
    return f"{minutes} min {seconds} s"


def counts_humane(counts: dict[str, Any]) -> str:
    """{"scores": 3, "tokens": 2} as "scores: 3 · tokens: 2"."""
    return " · ".join(f"{key}: {value}" for key, value in sorted(counts.items())) or "nothing"


def json_pretty(value: Any) -> str:
    """A JSON value indented in a <pre>, for change pages."""
    if not value:
        return "-"
    return format_html('<pre class="json">{}</pre>', json.dumps(value, indent=2, sort_keys=True, default=str))
