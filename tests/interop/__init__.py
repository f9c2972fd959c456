"""JavaScript clients run against the live server: where their runtime is, and how a test runs one.

`make install-js` (which `make test` runs) runs `npm ci --prefix tests`: tests/package.json's exact versions (the
lockfile) and, through the npm package `node`, a Node 22 binary, which the conformance suite needs (it imports
`fs.globSync`, new in Node 22). Every script runs on that binary, so the tests do not depend on the version of Node on
the machine, only on there being one (with npm) to install the packages; without the installed packages they fail,
saying what to run (.ci/run installs npm where it is missing).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent.parent
NODE_MODULES = TESTS / "node_modules"
NODE = NODE_MODULES / "node" / "bin" / "node"  # Node 22, from the npm package `node` pinned in tests/package.json
INTEROP = TESTS / "interop"


def node() -> str:
    """The pinned Node binary; the test fails, saying what to run, when the packages are not installed."""
    if not NODE.exists():
        pytest.fail(
            f"{NODE} is missing: run `make install-js` (npm ci --prefix tests; make test does it), which needs Node.js "
            "and npm"
        )
    return str(NODE)


def package_version(name: str) -> str:
    return json.loads((NODE_MODULES / name / "package.json").read_text())["version"]


def run_node(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the pinned Node with `args` (a script under tests/, its arguments), from tests/."""
    return subprocess.run(  # noqa: S603 - our own pinned binary and scripts
        [node(), *args],
        cwd=TESTS,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_json(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> dict[str, Any]:
    """Run a script that prints one JSON document on stdout; fail with its output when it did not succeed."""
    done = run_node(*args, env=env, timeout=timeout)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        pytest.fail(f"node {' '.join(args)} exited {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}")
    return json.loads(lines[-1])
