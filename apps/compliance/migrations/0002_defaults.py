"""Default retention policies and the periodic tasks that apply them (both editable in the admin)."""

from django.db import migrations

POLICIES = [
    # category, days, enabled
    ("scores", 730, False),  # people's own scores: kept until they delete them, unless an administrator decides
    ("derived_scores", 90, True),
    ("audit_events", 400, True),
    ("security_events", 180, True),
    ("expired_tokens", 30, True),
    ("export_files", 7, True),
]


def create(apps, schema_editor):
    RetentionPolicy = apps.get_model("compliance", "RetentionPolicy")
    for category, days, enabled in POLICIES:
        RetentionPolicy.objects.get_or_create(category=category, defaults={"days": days, "enabled": enabled})

    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    nightly, _ = CrontabSchedule.objects.get_or_create(
        minute="30", hour="3", day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
    )
    every_5_min, _ = IntervalSchedule.objects.get_or_create(every=5, period="minutes")
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=1, period="minutes")
    PeriodicTask.objects.get_or_create(
        name="Apply retention policies", defaults={"task": "compliance.apply_retention", "crontab": nightly}
    )
    PeriodicTask.objects.get_or_create(
        name="Run due data-subject requests", defaults={"task": "compliance.run_due_requests", "interval": every_5_min}
    )
    PeriodicTask.objects.get_or_create(
        name="Seal the audit trail", defaults={"task": "compliance.seal_audit", "interval": every_minute}
    )


class Migration(migrations.Migration):
    dependencies = [
        ("compliance", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
