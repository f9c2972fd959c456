"""Guard groups. Each tool declares one (apps.tools.registry); circuit breakers and concurrency limits are kept per
group, so that a failing importer cannot stop analyses, for example."""

from __future__ import annotations

GROUPS = ("music_analysis", "score_import", "composition", "export", "system")
