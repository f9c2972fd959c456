"""The settings of the tool worker processes in tests/tools/test_runner.py: the project's, plus the test-only tools
of tests/tools/held_tools.py."""

from music21_platform.settings import *  # noqa: F403
from music21_platform.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.tools.held_tools.HeldTools"]
