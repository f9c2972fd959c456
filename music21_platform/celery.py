"""The Celery application. Without a broker (`REDIS_URL` unset) tasks run eagerly in the calling process."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "music21_platform.settings")

app = Celery("music21_platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
