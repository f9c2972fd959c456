"""After an erasure, no table holds the person's name or e-mail: a person with a distinctive name first leaves
rows everywhere she can (scores, tool calls, OAuth tokens and grants, failed and successful sign-ins, an
administrator's edit of her account, her own change to a request, exports), then an administrator erases her, and
every text, JSON and binary column of every row of every model is searched for her name and address."""

from __future__ import annotations

import io
import json
import secrets
import zipfile
from datetime import timedelta
from typing import Any

from auditlog.context import set_actor
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import models
from django.test import Client, RequestFactory
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application, Grant, RefreshToken, set_token_value

from apps.compliance import services
from apps.compliance.models import AuditEvent, DataSubjectRequest, SubjectKey
from apps.tools.models import Score
from tests.support import superuser

# Names no other row of the test could hold by chance.
USERNAME = "zelda-quintessa-7731"
EMAIL = "zq7731.unique@privacy-trace.example"
PASSWORD = "a distinctive passphrase 7731"
SEARCHED = (USERNAME.lower(), EMAIL.lower(), "quintessa")


def _searchable(model: type[models.Model]) -> list[models.Field]:
    kinds = (models.CharField, models.TextField, models.JSONField, models.BinaryField)
    return [f for f in model._meta.concrete_fields if isinstance(f, kinds)]


def _unpacked(data: bytes) -> bytes:
    """A ZIP (an export archive) is searched member by member: compressed, a name would not show."""
    if not data.startswith(b"PK"):
        return data
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return b"".join(archive.read(name) for name in archive.namelist())


def _traces() -> list[str]:
    """Every (model, field, row) whose value mentions the person: text in any case, JSON as written, bytes."""
    found = []
    for model in apps.get_models():
        fields = _searchable(model)
        if not fields:
            continue
        for row in model._base_manager.all().values("pk", *(f.attname for f in fields)):
            for field in fields:
                value = row[field.attname]
                if value is None:
                    continue
                if isinstance(value, (bytes, memoryview)):
                    text = _unpacked(bytes(value)).decode("latin-1")
                elif isinstance(value, str):
                    text = value
                else:
                    text = json.dumps(value, default=str)
                if any(name in text.lower() for name in SEARCHED):
                    found.append(f"{model._meta.label}.{field.name} #{row['pk']}")
    for session in Session.objects.all():  # stored encoded: searched as decoded
        if any(name in json.dumps(session.get_decoded(), default=str).lower() for name in SEARCHED):
            found.append(f"sessions.Session #{session.pk}")
    return found


def _oauth_rows(person: Any) -> None:
    """An application (named by whoever registered it, not after her) holding her tokens and a pending code, and
    a client she registered herself, named after her."""
    application = Application.objects.create(
        name="Notation helper",
        client_type=Application.CLIENT_PUBLIC,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris="http://127.0.0.1:9/callback",
    )
    access = AccessToken(
        user=person, application=application, scope="music21:read", expires=timezone.now() + timedelta(hours=1)
    )
    set_token_value(access, secrets.token_urlsafe(32))
    access.save()
    RefreshToken.objects.create(
        user=person, application=application, token=secrets.token_urlsafe(32), access_token=access
    )
    Grant.objects.create(
        user=person,
        application=application,
        code=secrets.token_urlsafe(16),
        expires=timezone.now() + timedelta(minutes=1),
        redirect_uri="http://127.0.0.1:9/callback",
        scope="music21:read",
    )
    with set_actor(person):  # as the admin's form would, for a client she registers signed in
        Application.objects.create(
            name=f"Script of {USERNAME}",
            user=person,
            client_type=Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
        )


def _admin_edits(person: Any, administrator: Any) -> None:
    """An administrator changes her account in the admin: the ModelAdmin saves and logs it, with django-auditlog's
    actor set as its middleware sets it for an admin request."""
    request = RequestFactory().post("/admin/")
    request.user = administrator
    user_admin = admin.site._registry[get_user_model()]
    with set_actor(administrator, remote_addr="192.0.2.10"):
        person.first_name = "Quintessa"
        person.email = EMAIL.upper()  # and back: django-auditlog keeps both values
        user_admin.save_model(request, person, form=None, change=True)
        person.email = EMAIL
        user_admin.save_model(request, person, form=None, change=True)
    user_admin.log_change(request, person, [{"changed": {"fields": ["First name", "Email address"]}}])


def test_an_erasure_leaves_her_name_and_e_mail_in_no_table(celery_worker: None, call: Any) -> None:
    person = get_user_model().objects.create_user(USERNAME, EMAIL, PASSWORD)
    administrator = superuser()

    call(person, "import_score", score_id="chorale", source="bach/bwv66.6", source_type="corpus")
    # A tune she signed with her name: its source, title and composer name her.
    signed = f"X:1\nT:A tune by {USERNAME}\nC:{USERNAME}\nM:4/4\nL:1/4\nK:C\nCDEF|G4|]\n"
    call(person, "import_score", score_id="tune", source=signed, source_type="abc")
    call(person, "key_analysis", score_id="chorale")
    call(person, "transpose_score", score_id="chorale", interval="P5")
    _oauth_rows(person)

    browser = Client()
    for typed in (USERNAME, EMAIL, USERNAME.upper()):  # failed sign-ins, as she may have typed her name
        browser.post("/accounts/login/", {"username": typed, "password": "not it"})
    assert browser.post("/accounts/login/", {"username": USERNAME, "password": PASSWORD}).status_code == 302
    assert Session.objects.exists()

    _admin_edits(person, administrator)

    # Her own export, built; one she then cancels herself (django-auditlog records her as its author); and one
    # an administrator filed for her, still waiting when she is erased.
    built = services.subject_request_create(subject=person, kind="export")
    services.subject_request_run(request_id=built.pk)
    assert DataSubjectRequest.objects.get(pk=built.pk).status == "completed"
    cancelled = services.subject_request_create(subject=person, kind="export")
    with set_actor(person, remote_addr="198.51.100.77"):
        services.subject_request_cancel(request=cancelled, by=person)
    waiting = services.subject_request_create(subject=person, kind="export", handled_by=administrator, via="admin")

    before = _traces()
    # The test can find her: every kind of row above names her before the erasure.
    for label in (
        "auth.User", "axes.AccessAttempt", "axes.AccessLog", "auditlog.LogEntry",
        "admin.LogEntry", "security.SecurityEvent", "compliance.ExportArchive", "tools.Score",
    ):  # fmt: skip
        assert any(trace.startswith(f"{label}.") for trace in before), (label, before)

    pseudonym = SubjectKey.objects.get(user=person).pseudonym
    erasure = services.subject_request_create(subject=person, kind="erasure", handled_by=administrator, via="admin")
    services.subject_request_approve(request=erasure, by=administrator, run_now=True)
    services.subject_request_run(request_id=erasure.pk)
    assert DataSubjectRequest.objects.get(pk=erasure.pk).status == "completed"

    assert _traces() == []
    # What stays refers to her by pseudonym only: her requests, and the audit trail of her activity and erasure.
    assert set(DataSubjectRequest.objects.values_list("subject_pseudonym", flat=True)) == {pseudonym}
    assert DataSubjectRequest.objects.get(pk=waiting.pk).status == "cancelled"
    assert AuditEvent.objects.get(action="privacy.erasure").actor == pseudonym
    assert AuditEvent.objects.filter(actor=pseudonym, action="tool.import_score").count() == 2
    assert not SubjectKey.objects.filter(pseudonym=pseudonym).exists()
    assert not Score.objects.exists() and not AccessToken.objects.exists()
