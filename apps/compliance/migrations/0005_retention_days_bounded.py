from __future__ import annotations

from typing import Any

import django.core.validators
from django.db import migrations, models


def _bound_days(apps: Any, schema_editor: Any) -> None:
    """A period saved before the bound (which made every retention run fail) becomes the longest allowed."""
    apps.get_model("compliance", "RetentionPolicy").objects.filter(days__gt=36500).update(days=36500)


class Migration(migrations.Migration):
    dependencies = [
        ("compliance", "0004_datasubjectrequest_filed_by"),
    ]

    operations = [
        migrations.AlterField(
            model_name="retentionpolicy",
            name="days",
            field=models.PositiveIntegerField(
                help_text="Keep records of this category this many days, then delete them.",
                validators=[
                    django.core.validators.MaxValueValidator(
                        36500, message="At most 36500 days (100 years); to keep records for ever, disable the policy."
                    )
                ],
            ),
        ),
        migrations.RunPython(_bound_days, migrations.RunPython.noop),
    ]
