"""ASGI entry point: Django for every path (the MCP endpoint is mounted beside it by the MCP bridge)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "music21_platform.settings")

application = get_asgi_application()
