"""Every music21 tool, declared once. Each function only connects the caller's stored scores with a pure service.

Importing this package fills the tool registry (apps.tools.registry), module by module in the order below, which is
the order clients list the tools in."""

from __future__ import annotations

import importlib

for _module in ("scores", "analysis", "composition", "server"):
    importlib.import_module(f"{__name__}.{_module}")
