"""The periodic tasks' admin (django-celery-beat's), with the checks its form lacks.

Retention, the due data-subject requests and the audit sealer run from these schedules. django-celery-beat's form
checks only that the arguments are JSON and not the headers at all, and its scheduler skips without a word a task
whose stored arguments or headers it cannot use: a typo in the admin silently stopped the nightly retention. Its
model stores blank headers as NULL, which the column refuses (a 500), and its form's `clean` reads a task name
that its field has refused (another 500). Here each JSON field must be what the scheduler needs, blank meaning
none, and a registered task must be one of the list. A crontab schedule's page described the schedule being typed
in words, and a value its fields refuse (a minute of -1) made that description fail: a 500 instead of the fields'
messages.
"""

from __future__ import annotations

import json
from typing import Any

from celery.schedules import ParseException
from django import forms
from django.contrib import admin
from django_celery_beat.admin import CrontabScheduleAdmin, PeriodicTaskAdmin, PeriodicTaskForm
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from apps.core.json_input import json_parse


class CheckedPeriodicTaskForm(PeriodicTaskForm):
    def clean_regtask(self) -> str:
        value = self.cleaned_data.get("regtask") or ""
        if value and value not in dict(self.fields["regtask"].widget.choices):
            raise forms.ValidationError(
                f"No task {value!r} is registered: choose one from the list, or type its name under Task (custom)."
            )
        return value

    def clean_args(self) -> str:
        return self._json_of("args", list, "a list", '["arg1", 2]')

    def clean_kwargs(self) -> str:
        return self._json_of("kwargs", dict, "an object", '{"argument": "value"}')

    def clean_headers(self) -> str:
        return self._json_of("headers", dict, "an object", '{"header": "value"}')

    def _json_of(self, field: str, kind: type, named: str, example: str) -> str:
        """The field's JSON if it is `kind` (blank: an empty one), else a message saying what is expected."""
        value = (self.cleaned_data.get(field) or "").strip() or json.dumps(kind())
        try:
            parsed = json_parse(value)
        except ValueError as exc:
            raise forms.ValidationError(f"This is not JSON ({exc}): give {named}, such as {example}.") from None
        if not isinstance(parsed, kind):
            raise forms.ValidationError(f"Give a JSON {named.split()[-1]}, such as {example}, or leave it blank.")
        return value

    def clean(self) -> dict[str, Any]:
        if "task" not in self.cleaned_data:  # the custom name was refused, and its field says why
            return self.cleaned_data
        return super().clean()


class CheckedPeriodicTaskAdmin(PeriodicTaskAdmin):
    form = CheckedPeriodicTaskForm


class CheckedCrontabScheduleAdmin(CrontabScheduleAdmin):
    fields = ("described", *CrontabScheduleAdmin.fields[1:])
    readonly_fields = ("described",)

    @admin.display(description="human readable")
    def described(self, schedule: CrontabSchedule) -> str:
        try:
            return schedule.human_readable
        except (ParseException, ValueError):  # what was typed is refused, and each field says why
            return "(not a schedule yet: see the fields below)"


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, CheckedPeriodicTaskAdmin)
admin.site.unregister(CrontabSchedule)
admin.site.register(CrontabSchedule, CheckedCrontabScheduleAdmin)
