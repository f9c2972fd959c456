from __future__ import annotations

from typing import Any

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def filers_from_handlers(apps: Any, schema_editor: Any) -> None:
    # Requests filed in the admin recorded their administrator as the first handler; an approval by another
    # administrator may have replaced it since, so this is the best the old rows tell.
    request_model = apps.get_model("compliance", "DataSubjectRequest")
    request_model.objects.filter(via="admin", handled_by__isnull=False).update(filed_by=models.F("handled_by"))


class Migration(migrations.Migration):
    dependencies = [
        ("compliance", "0003_audit_search_indexes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="datasubjectrequest",
            name="filed_by",
            field=models.ForeignKey(
                blank=True,
                help_text="The administrator who filed the request for the person; empty when the person filed it.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunPython(filers_from_handlers, migrations.RunPython.noop),
    ]
