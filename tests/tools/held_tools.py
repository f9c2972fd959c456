"""Test-only tools that run in real tool worker processes (tests/tools/test_runner.py) and stay busy as long as a
test says: `test_hold` writes `<marker>.started` once it runs, then returns when `<marker>.release` exists or after
`seconds`, whichever comes first. Files, because the test and the call are in different processes.

The worker processes load this module through their Django settings: tests/tools/held_tools_settings.py (the
project's settings plus the app below), named by DJANGO_SETTINGS_MODULE in the environment they are spawned with.
The test process declares the same tools with `declare()` for the duration of a test.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from django.apps import AppConfig

from apps.tools.registry import TOOLS, ToolArguments, tool


class HoldArgs(ToolArguments):
    marker: str
    seconds: float = 60.0


def hold(caller: Any, args: HoldArgs) -> dict[str, Any]:
    """Test only: busy until released."""
    Path(f"{args.marker}.started").touch()
    release = Path(f"{args.marker}.release")
    until = time.monotonic() + args.seconds
    while not release.exists() and time.monotonic() < until:
        time.sleep(0.01)
    return {"marker": args.marker, "process": os.getpid()}


NAMES = ("test_hold",)


def declare() -> None:
    if "test_hold" not in TOOLS:
        tool("test_hold", arguments=HoldArgs, scope=None, group="music_analysis")(hold)


def forget() -> None:
    for name in NAMES:
        TOOLS.pop(name, None)


class HeldTools(AppConfig):
    name = "tests.tools.held_tools"
    label = "test_held_tools"

    def ready(self) -> None:
        declare()
