"""The platform's Prometheus metrics, defined once. Names and labels are part of the product contract (SPEC.md)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("mcp_requests_total", "Tool calls by tool and outcome.", ["tool", "status"])
REQUEST_DURATION = Histogram(
    "mcp_request_duration_seconds",
    "Time to answer a tool call, guards included.",
    ["tool"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
CONCURRENT = Gauge("mcp_concurrent_requests", "Tool calls in flight in this process.")
ANALYSIS_DURATION = Histogram(
    "music21_analysis_duration_seconds",
    "Time spent in the music21 work of a call.",
    ["tool"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
AUTH_ATTEMPTS = Counter("music21_auth_attempts_total", "Bearer-token and login attempts by result.", ["result"])
SECURITY_VIOLATIONS = Counter("music21_security_violations_total", "Security events by kind.", ["kind"])
BLOCKED = Counter("music21_blocked_requests_total", "Calls refused by a guard, by reason.", ["reason"])
BREAKER_STATE_CHANGES = Counter(
    "music21_circuit_breaker_state_changes", "Circuit breaker state changes.", ["circuit_name"]
)
