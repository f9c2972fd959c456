"""The official MCP conformance suite (`@modelcontextprotocol/conformance`, pinned in tests/package.json) against the
live server: its server scenarios under the 2025-11-25 and the 2026-07-28 requirement sets (each run at its own wire:
the initialize handshake, then stateless requests with per-request `_meta`), and its authorization-server scenarios
against the OAuth provider, with the test as the person at the browser.

A scenario that cannot apply to this server is listed in NOT_APPLICABLE with the reason, and the test checks that
the suite reported it and that only the checks named there failed in it. Every other failed check fails the test.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from apps.tools.registry import TOOLS
from tests.interop import NODE_MODULES, TESTS, node
from tests.security.oauth_flow import Browser, _hidden_fields, register
from tests.support import free_port

SUITE = NODE_MODULES / "@modelcontextprotocol" / "conformance"
REVISIONS = ["2025-11-25", "2026-07-28"]


@dataclass(frozen=True)
class NotApplicable:
    reason: str
    checks: frozenset[str] | None = None  # the checks that may fail; None: any but the wire-schema checks


def _fixture(what: str) -> str:
    return (
        f"calls the suite's reference-server fixture {what}, which this server does not have (its tools are music21's)"
    )


NO_SERVER_TO_CLIENT_REQUESTS = (
    "no tool of this server asks the client anything (sampling, elicitation, roots), so there is nothing for the "
    "scenario to observe; "
)

NOT_APPLICABLE: dict[str, NotApplicable] = {
    # --- both eras
    "completion-complete": NotApplicable(
        "it completes argument `arg1` of the suite's fixture prompt `test_prompt_with_arguments`, which this server "
        "does not have (MCP suggests -32602 for an unknown prompt; an empty completion passes)",
        frozenset({"completion-complete"}),
    ),
    "tools-call-image": NotApplicable(_fixture("tool `test_image_content`")),
    "tools-call-audio": NotApplicable(_fixture("tool `test_audio_content`")),
    "tools-call-embedded-resource": NotApplicable(_fixture("tool `test_embedded_resource`")),
    "tools-call-mixed-content": NotApplicable(_fixture("tool `test_multiple_content_types`")),
    # These two pass today only because this server answers a call of an unknown tool with an isError result that
    # has text, where MCP asks for a -32602 protocol error; once it does, they fail, as they should here.
    "tools-call-simple-text": NotApplicable(_fixture("tool `test_simple_text`")),
    "tools-call-error": NotApplicable(_fixture("tool `test_error_handling`")),
    "tools-call-with-progress": NotApplicable(
        _fixture("tool `test_tool_with_progress`")
        + " (this server's progress notifications, from analyze_corpus, are covered by tests/mcp_bridge/test_http.py)"
    ),
    "resources-read-text": NotApplicable(_fixture("resource `test://static-text`")),
    "resources-read-binary": NotApplicable(_fixture("resource `test://static-binary`")),
    "resources-templates-read": NotApplicable(_fixture("resource template `test://template/{id}/data`")),
    "prompts-get-simple": NotApplicable(_fixture("prompt `test_simple_prompt`")),
    "prompts-get-with-args": NotApplicable(_fixture("prompt `test_prompt_with_arguments`")),
    "prompts-get-embedded-resource": NotApplicable(_fixture("prompt `test_prompt_with_embedded_resource`")),
    "prompts-get-with-image": NotApplicable(_fixture("prompt `test_prompt_with_image`")),
    "json-schema-2020-12": NotApplicable(_fixture("tool `json_schema_2020_12_tool`")),
    # --- 2025-11-25
    "logging-set-level": NotApplicable(
        "the server declares no `logging` capability (MCP makes it optional, and the SPEC does not promise it); "
        "the scenario sends logging/setLevel regardless and gets -32601",
        frozenset({"logging-set-level"}),
    ),
    "tools-call-with-logging": NotApplicable(_fixture("tool `test_tool_with_logging`") + ", and needs `logging`"),
    "tools-call-sampling": NotApplicable(NO_SERVER_TO_CLIENT_REQUESTS + _fixture("tool `test_sampling`")),
    "tools-call-elicitation": NotApplicable(NO_SERVER_TO_CLIENT_REQUESTS + _fixture("tool `test_elicitation`")),
    "elicitation-sep1034-defaults": NotApplicable(
        NO_SERVER_TO_CLIENT_REQUESTS + _fixture("tool `test_elicitation_sep1034_defaults`")
    ),
    "elicitation-sep1330-enums": NotApplicable(
        NO_SERVER_TO_CLIENT_REQUESTS + _fixture("tool `test_elicitation_sep1330_enums`")
    ),
    "resources-subscribe": NotApplicable(
        "the server declares resources.subscribe=false (scores change only by the owner's own calls); "
        + _fixture("resource `test://watched-resource`"),
        frozenset({"resources-subscribe"}),
    ),
    "resources-unsubscribe": NotApplicable(
        "the server declares resources.subscribe=false; " + _fixture("resource `test://watched-resource`"),
        frozenset({"resources-unsubscribe"}),
    ),
    # --- 2026-07-28
    "server-stateless": NotApplicable(
        "four of its checks need fixture tools: `test_missing_capability` (a tool that requires the client's "
        "sampling capability; no tool of this server requires a client capability), `test_streaming_elicitation` "
        "(a tool that asks the client something mid-call; none does) and `test_logging_tool` (a tool that logs; "
        "the server declares no logging). The others apply",
        frozenset(
            {
                "sep-2575-server-rejects-undeclared-capability",
                "sep-2575-missing-capability-http-400",
                "sep-2575-http-server-no-independent-requests-on-stream",
                "sep-2575-server-no-log-without-loglevel",
            }
        ),
    ),
    **{
        f"input-required-result-{name}": NotApplicable(
            NO_SERVER_TO_CLIENT_REQUESTS + _fixture(f"{fixture} (an InputRequiredResult)")
        )
        for name, fixture in [
            ("basic-elicitation", "tool `test_input_required_result_elicitation`"),
            ("basic-sampling", "tool `test_input_required_result_sampling`"),
            ("basic-list-roots", "tool `test_input_required_result_list_roots`"),
            ("request-state", "tool `test_input_required_result_request_state`"),
            ("multiple-input-requests", "tool `test_input_required_result_multiple_inputs`"),
            ("multi-round", "tool `test_input_required_result_multi_round`"),
            ("missing-input-response", "tool `test_input_required_result_elicitation`"),
            ("non-tool-request", "prompt `test_input_required_result_prompt`"),
            ("result-type", "tool `test_input_required_result_elicitation`"),
            ("unsupported-methods", "tool `test_input_required_result_elicitation`"),
            ("tampered-state", "tool `test_input_required_result_tampered_state`"),
            ("capability-check", "tool `test_input_required_result_capabilities`"),
            ("ignore-extra-params", "tool `test_input_required_result_elicitation`"),
            ("validate-input", "tool `test_input_required_result_elicitation`"),
        ]
    },
    **{
        f"tasks-{name}": NotApplicable(
            "the io.modelcontextprotocol/tasks extension (SEP-2663, optional, not scored by the suite) is not "
            "offered: the server does not advertise it, and its long job (analyze_corpus) reports progress instead; "
            + _fixture("tools `slow_compute`, `failing_job`, `confirm_delete` …")
        )
        for name in [
            "lifecycle",
            "capability-negotiation",
            "wire-fields",
            "request-state-removal",
            "mrtr-input",
            "request-headers",
            "dispatch-and-envelope",
            "status-notifications",
            "required-task-error",
            "mrtr-composition",
        ]
    },
    "http-custom-header-server-validation": NotApplicable(
        "no tool of this server declares x-mcp-header parameters (SEP-2243 custom headers), so none of its checks "
        "can be exercised"
    ),
}

WIRE_CHECKS = frozenset({"wire-schema-valid"})  # what the server sent violates the spec's schema: never excused


@dataclass(frozen=True)
class Check:
    scenario: str
    id: str
    status: str
    message: str  # the error message, or what the check is about


def _results(output: Path) -> dict[str, list[Check]]:
    """The suite's checks by scenario, from its output directory (one `<leg>-<scenario>-<timestamp>/checks.json`
    per scenario run)."""
    results: dict[str, list[Check]] = {}
    for checks_file in output.glob("*/checks.json"):
        match = re.fullmatch(r"(?:server|authorization-server)-(.+)-\d{4}-\d\d-\d\dT[\d-]+Z", checks_file.parent.name)
        assert match, checks_file
        scenario = match.group(1)
        results[scenario] = [
            Check(scenario, c["id"], c["status"], c.get("errorMessage") or c.get("description") or "")
            for c in json.loads(checks_file.read_text())
        ]
    return results


def _required(revision: str) -> set[str]:
    """The server scenarios the suite runs for `revision`: those it requires, and those it runs unscored."""
    requirements = yaml.safe_load((SUITE / "requirements" / f"{revision}.yaml").read_text())
    unscored = {entry["scenario"] for entry in requirements["not_scored"] if entry["leg"] == "server"}
    return set(requirements["server"]) | unscored


def _unexcused(results: dict[str, list[Check]]) -> list[Check]:
    failed = []
    for scenario, checks in results.items():
        excuse = NOT_APPLICABLE.get(scenario)
        for check in checks:
            if check.status != "FAILURE":
                continue
            if (
                excuse is not None
                and check.id not in WIRE_CHECKS
                and (excuse.checks is None or check.id in excuse.checks)
            ):
                continue
            failed.append(check)
    return failed


def _report(results: dict[str, list[Check]]) -> str:
    lines = []
    for scenario in sorted(results):
        statuses = [c.status for c in results[scenario]]
        verdict = "FAIL" if "FAILURE" in statuses else "pass"
        if scenario in NOT_APPLICABLE:
            verdict = f"n/a ({verdict})"
        notes = [
            f"{c.status.lower()} {c.id}: {c.message[:300]}"
            for c in results[scenario]
            if c.status == "WARNING" or (c.status == "FAILURE" and scenario in NOT_APPLICABLE)
        ]
        lines.append(f"{verdict:12} {scenario}" + "".join(f"\n{'':15}{note}" for note in notes))
    return "\n".join(lines)


@pytest.fixture
def site_with_alices_token(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, alice: Any, token_for: Any, chorale: Any
) -> Iterator[str]:
    """The live site, where a request to /mcp without credentials carries alice's token (who has one score, so
    that resources/list and resources/read have something to show).

    The suite's server runner has no way to send credentials (0.2.0-alpha.12: no header option, no environment
    variable), and /mcp answers 401 without them. The token is added in front of the very application the
    `live_site` fixture serves, so everything else the suite sends (Host, Origin, MCP headers) reaches it as sent.
    """
    from music21_platform import asgi

    build = asgi.build_application
    token: list[str] = []  # minted once the site is up: a token's audience is the site's /mcp
    added: list[str] = []

    def build_with_token() -> Any:
        application = build()

        async def with_token(scope: dict[str, Any], receive: Any, send: Any) -> None:
            headers = scope.get("headers", [])
            if (
                scope["type"] == "http"
                and scope["path"] == "/mcp"
                and not any(k == b"authorization" for k, _ in headers)
            ):
                scope = {**scope, "headers": [*headers, (b"authorization", f"Bearer {token[0]}".encode())]}
                added.append(scope["method"])
            await application(scope, receive, send)

        return with_token

    monkeypatch.setattr(asgi, "build_application", build_with_token)
    site = request.getfixturevalue("live_site")
    token.append(token_for(alice))
    yield site
    assert added, "the suite's requests did not go through the token wrapper (did live_site stop building the app?)"


@pytest.mark.parametrize("revision", REVISIONS)
def test_mcp_conformance(site_with_alices_token: str, revision: str, tmp_path: Path) -> None:
    """Every server scenario of the revision's requirement set (and those it runs unscored) passes, or is listed as
    not applicable with only its listed checks failing."""
    output = tmp_path / "results"
    done = subprocess.run(  # noqa: S603 - the pinned Node and suite
        [
            node(),
            str(SUITE / "dist" / "index.js"),
            "server",
            "--url",
            f"{site_with_alices_token}/mcp",
            "--requirements",
            revision,
            "--output-dir",
            str(output),
        ],
        cwd=TESTS,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    results = _results(output)
    report = _report(results)
    print(f"conformance {revision}\n{report}")  # shown with -rP, and on failure

    expected = _required(revision)
    assert set(results) == expected, (
        f"the suite ran {sorted(set(results))}, the requirement set names {sorted(expected)}\n{done.stdout[-3000:]}"
        f"\n{done.stderr[-3000:]}"
    )
    listed_here = {name for name in NOT_APPLICABLE if name in expected}
    unknown = set(NOT_APPLICABLE) - _required("2025-11-25") - _required("2026-07-28")
    assert not unknown, f"NOT_APPLICABLE names scenarios the suite does not run: {sorted(unknown)}"
    assert listed_here <= set(results)

    # The fixtures of the not-applicable scenarios really are absent here.
    assert not {name for name in TOOLS if name.startswith("test_")}

    failed = _unexcused(results)
    assert not failed, "the server fails conformance checks:\n" + "\n".join(
        f"  {c.scenario}: {c.id}: {c.message}" for c in failed
    )


def _play_the_person_at_the_browser(base_url: str, authorization_url: str) -> str:
    """Sign in as alice, allow the suite's client on the consent page; the redirect back to the suite's callback."""
    browser = Browser.logged_in(base_url, "alice")
    page = browser.http.get(authorization_url)
    assert page.status_code == 200 and "Allow" in page.text, page.text[:500]
    fields = _hidden_fields(page.text)
    fields["allow"] = "Authorize"
    response = browser.http.post("/o/authorize/", data=fields)
    assert response.status_code == 302, response.text[:500]
    return response.headers["location"]


@pytest.mark.parametrize("revision", REVISIONS)
def test_authorization_server_conformance(live_site: str, alice: Any, revision: str, tmp_path: Path) -> None:
    """The suite's authorization-server scenarios: the RFC 8414 metadata, then an authorization-code grant with PKCE
    S256 and the resource indicator for /mcp, by a client registered the way an MCP client registers."""
    port = free_port()
    client = register(
        live_site, client_name="MCP conformance suite", redirect_uris=[f"http://127.0.0.1:{port}/callback"]
    )
    output = tmp_path / "results"
    suite = subprocess.Popen(  # noqa: S603 - the pinned Node and suite
        [
            node(),
            str(SUITE / "dist" / "index.js"),
            "authorization",
            "--url",
            live_site,
            "--client-id",
            client["client_id"],
            "--resource",
            f"{live_site}/mcp",
            "--port",
            str(port),
            "--spec-version",
            revision,
            "--output-dir",
            str(output),
        ],
        cwd=TESTS,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        printed = []
        assert suite.stdout is not None
        for line in suite.stdout:  # the suite prints the URL a person should open, then waits for the callback
            printed.append(line)
            if line.startswith(f"{live_site}/o/authorize/"):
                callback = _play_the_person_at_the_browser(live_site, line.strip())
                assert callback.startswith(f"http://127.0.0.1:{port}/callback?")
                for _ in range(50):  # the suite's callback server may still be binding its port
                    try:
                        httpx2.get(callback, timeout=10).raise_for_status()
                        break
                    except httpx2.ConnectError:
                        time.sleep(0.1)
                break
        out, err = suite.communicate(timeout=120)
    finally:
        if suite.poll() is None:
            suite.kill()
            suite.wait()
    results = _results(output)
    print(f"authorization conformance {revision}\n{_report(results)}")
    assert set(results) == {"authorization-server-metadata-endpoint", "authorization-code-grant"}, (
        "".join(printed) + out + err
    )
    failed = [c for checks in results.values() for c in checks if c.status == "FAILURE"]
    assert not failed, "the authorization server fails conformance checks:\n" + "\n".join(
        f"  {c.scenario}: {c.id}: {c.message}" for c in failed
    )
