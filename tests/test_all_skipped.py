"""`make test` fails when every collected test was skipped (tests/all_skipped.py), alone and under pytest-xdist."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What a broken environment does to a suite: every test skipped by one session-wide fixture.
BROKEN_ENVIRONMENT = """
import pytest

@pytest.fixture(autouse=True, scope="session")
def _browser():
    pytest.importorskip("a_browser_driver_this_machine_lacks")
"""
TESTS = "def test_one():\n    pass\n\ndef test_two():\n    pass\n\ndef test_three():\n    pass\n"


def _pytest(folder: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """pytest on `folder` alone, with the project's plugin and nothing else of the project's (its own ini file)."""
    (folder / "pytest.ini").write_text("[pytest]\n")
    plugins = ["-p", "tests.all_skipped", "-p", "no:django", "-p", "no:cacheprovider"]
    return subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-m", "pytest", *plugins, *arguments, str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["alone", "xdist"])
def test_a_run_in_which_every_test_was_skipped_fails_saying_so(tmp_path: Path, workers: list[str]) -> None:
    (tmp_path / "conftest.py").write_text(BROKEN_ENVIRONMENT)
    (tmp_path / "test_suite.py").write_text(TESTS)

    result = _pytest(tmp_path, *workers)

    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout
    assert "No test ran: all 3 collected tests were skipped" in result.stdout
    assert "3 skipped" in result.stdout


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["alone", "xdist"])
def test_a_run_in_which_some_tests_skip_and_the_others_pass_passes(tmp_path: Path, workers: list[str]) -> None:
    skipped = (
        '@pytest.mark.skipif(shutil.which("a-program-this-machine-lacks") is None, reason="not on this machine")\n'
        "def test_four():\n    pass\n"
    )
    (tmp_path / "test_suite.py").write_text(f"import shutil\n\nimport pytest\n\n{TESTS}\n{skipped}")

    result = _pytest(tmp_path, *workers)

    assert result.returncode == pytest.ExitCode.OK, result.stdout
    assert "3 passed, 1 skipped" in result.stdout
    assert "No test ran" not in result.stdout
