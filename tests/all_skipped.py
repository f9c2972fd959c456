"""A pytest plugin (tests/conftest.py loads it): a run in which every collected test was skipped fails.

pytest exits 0 when every test skips, so a broken environment that makes the whole suite skip (a missing browser, a
server that is not there) would pass CI (`make test`) without having tested anything. pytest already fails a run that
collects nothing (exit 5). Under pytest-xdist the controller judges the whole run: its terminal reporter holds every
worker's reports, while a worker sees only its share."""

from __future__ import annotations

import pytest

# A test in any of these ran (an expected failure ran too); an error already fails the run by itself.
RAN = ("passed", "failed", "error", "xfailed", "xpassed")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput") or exitstatus != pytest.ExitCode.OK:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    skipped = len(reporter.stats.get("skipped", []))
    if skipped and not any(reporter.stats.get(outcome) for outcome in RAN):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter.write("\n")  # after the progress line, which pytest has not ended yet
        reporter.write_line(
            f"No test ran: all {skipped} collected tests were skipped, so nothing was tested and the run fails.",
            red=True,
            bold=True,
        )
