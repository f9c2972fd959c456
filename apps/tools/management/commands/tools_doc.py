"""`python manage.py tools_doc`: rewrite docs/tools.md from the tool registry."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.tools.docs import tools_markdown


class Command(BaseCommand):
    help = "Write docs/tools.md from the tool registry."

    def handle(self, *args: Any, **options: Any) -> None:
        target = settings.BASE_DIR / "docs" / "tools.md"
        target.write_text(tools_markdown())
        self.stdout.write(f"wrote {target}")
