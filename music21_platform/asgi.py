"""ASGI entry point: `/mcp` (and `/mcp/`) goes to the MCP server, every other path to Django.

The lifespan belongs to the MCP app (its session manager must run for the server's whole life); Django's ASGI
handler speaks only HTTP.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "music21_platform.settings")

django_application = get_asgi_application()  # sets Django up; the MCP app below needs the models

from apps.core.runtime import gc_tune  # noqa: E402
from apps.mcp_bridge.http import MCP_PATH, build_mcp_app  # noqa: E402
from apps.tools.runner import runner_start  # noqa: E402

ASGIApp = Any


def build_application() -> ASGIApp:
    """The whole site. Settings (PUBLIC_URL, ALLOWED_HOSTS) are read now, so tests build one per server."""
    mcp_application = build_mcp_app()

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await mcp_application(scope, receive, send)
            return
        # The MCP endpoint is one URL: a path below it (/mcp/foo) is Django's 404, with a token or without.
        if scope.get("path", "") in (MCP_PATH, MCP_PATH + "/"):
            await mcp_application(scope, receive, send)
            return
        await django_application(scope, receive, send)

    return application


application = build_application()
gc_tune()  # after start-up: what is loaded now stays out of the collector's sight (apps.core.runtime)
runner_start()  # tool worker processes ready before the first call (apps.tools.runner)
