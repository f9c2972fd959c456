"""The pages of the site as a whole: the landing page, and the tool reference it links to."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from apps.mcp_bridge.http import MCP_PATH
from apps.tools.docs import tools_markdown
from apps.tools.registry import TOOLS


def _first_sentence(text: str) -> str:
    return " ".join(text.split()).split(". ")[0].rstrip(".")


@require_safe
def landing(request: HttpRequest) -> HttpResponse:
    """What this server is, the URL an MCP client connects to, and where to go next."""
    return render(
        request,
        "landing.html",
        {
            "mcp_url": settings.PUBLIC_URL + MCP_PATH,
            # The first sentence of each description: the whole text, with its Returns section, is the reference's.
            # In the order clients list them (apps.tools.declarations): scores, analysis, composition, the server.
            "tools": [(tool.name, _first_sentence(tool.description)) for tool in TOOLS.values()],
        },
    )


@require_safe
def tools_reference(request: HttpRequest) -> HttpResponse:
    """The tool reference (docs/tools.md), written from the registry, as text a browser shows."""
    return HttpResponse(tools_markdown(), content_type="text/plain; charset=utf-8")
