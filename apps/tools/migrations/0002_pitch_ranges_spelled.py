"""Pitch ranges stored before pitches were spelled with `b` for a flat (`B-4` becomes `Bb4`), so that every result,
whenever its score was imported, follows the one spelling (apps.tools.services.spelling)."""

from __future__ import annotations

from typing import Any

from django.db import migrations
from django.db.models import Q


def _spelled(name: str) -> str:
    letter, rest = name[:1], name[1:]
    return letter + rest.replace("-", "b")  # music21 writes a flat (or a double flat) as '-' after the letter


def spell(apps: Any, schema_editor: Any) -> None:
    Score = apps.get_model("tools", "Score")
    for score in Score.objects.filter(Q(lowest_pitch__contains="-") | Q(highest_pitch__contains="-")).only(
        "lowest_pitch", "highest_pitch"
    ):
        score.lowest_pitch = _spelled(score.lowest_pitch)
        score.highest_pitch = _spelled(score.highest_pitch)
        score.save(update_fields=["lowest_pitch", "highest_pitch"])


class Migration(migrations.Migration):
    dependencies = [("tools", "0001_initial")]

    operations = [migrations.RunPython(spell, migrations.RunPython.noop)]
