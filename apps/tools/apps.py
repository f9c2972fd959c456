from __future__ import annotations

from django.apps import AppConfig


class ToolsConfig(AppConfig):
    name = "apps.tools"
    label = "tools"
    verbose_name = "Scores and music21 tools"

    def ready(self) -> None:
        # Importing the declarations fills the tool registry once, at start-up.
        from apps.compliance.holdings import holding_register
        from apps.core.metrics import series_initialise
        from apps.core.tracing import tracing_setup
        from apps.tools import declarations  # noqa: F401
        from apps.tools.holdings import SCORES_HOLDING
        from apps.tools.registry import TOOLS

        series_initialise(tools=TOOLS)
        # People's scores are personal data: compliance exports, erases, expires and reports them through this.
        holding_register(SCORES_HOLDING)
        # Before the first request, so that the Django instrumentation wraps the middleware.
        tracing_setup()
