"""Data-subject rights: the export holds everything of the person and nothing of anyone else; erasure leaves no row
that refers to them, while the audit trail still verifies."""

from __future__ import annotations

import base64
import io
import itertools
import json
import threading
import time
import zipfile
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from music21 import converter, midi
from oauth2_provider.models import AccessToken, Grant, RefreshToken

from apps.compliance import services, tasks
from apps.compliance.models import AuditEvent, DataSubjectRequest, ExportArchive, SubjectKey
from apps.compliance.services import RequestRefused
from apps.compliance.services import export as export_service
from apps.security.models import Block, SecurityEvent
from apps.security.redis import shared_redis
from apps.tools.invocation import Caller, invoke_tool
from apps.tools.models import Score
from apps.tools.services.cache import parsed_scores
from tests.support import signed_in, superuser

PASSWORD = "correct horse battery staple"


def _midi() -> bytes:
    return midi.translate.streamToMidiFile(converter.parse("tinyNotation: 4/4 c4 e g c'")).writestr()


@pytest.fixture
def alices_library(alice: Any, bob: Any, call: Any) -> dict[str, bytes]:
    """alice: a corpus chorale, tinyNotation, MIDI, and a transposition; bob: one tinyNotation score."""
    call(alice, "import_score", score_id="chorale", source="bach/bwv66.6", source_type="corpus")
    call(alice, "import_score", score_id="tune", source="tinyNotation: 4/4 c4 d e f g1", source_type="tinynotation")
    midi = _midi()
    call(alice, "import_score", score_id="ping", source=base64.b64encode(midi).decode(), source_type="midi")
    call(alice, "transpose_score", score_id="tune", interval="P5")
    call(bob, "import_score", score_id="bobs-secret", source="tinyNotation: 3/4 a4 b c'", source_type="tinynotation")
    return {
        s.score_id: (s.source if isinstance(s.source, bytes) else s.source.encode())
        for s in Score.objects.filter(owner=alice)
    }


def _wait_for(request_id: int, status: str = "completed", seconds: float = 60) -> DataSubjectRequest:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = DataSubjectRequest.objects.get(pk=request_id)
        if found.status == status:
            return found
        time.sleep(0.2)
    raise AssertionError(f"request {request_id} is {found.status}, not {status}")


def _erasure_due(subject: Any) -> DataSubjectRequest:
    """An erasure request whose grace period has passed, left for the periodic task to run. (One filed with no
    grace period would also be handed to Celery at once, and a worker another test of this session started
    would race the periodic task for it.)"""
    request = services.subject_request_create(subject=subject, kind="erasure", password=PASSWORD)
    assert request.status == "scheduled" and request.scheduled_for > request.requested_at
    DataSubjectRequest.objects.filter(pk=request.pk).update(scheduled_for=request.requested_at)
    return request


def test_the_export_holds_every_score_as_musicxml_and_as_given_and_nothing_of_bob(
    alices_library: dict[str, bytes], alice: Any, celery_worker: None
) -> None:
    request = services.subject_request_create(subject=alice, kind="export")
    tasks.subject_request_start(request)  # as the privacy page and the API do
    _wait_for(request.pk)  # built by the Celery task (a real worker when a broker is configured)
    archive = zipfile.ZipFile(io.BytesIO(bytes(ExportArchive.objects.get(request=request).content)))
    manifest = json.loads(archive.read("manifest.json"))
    assert set(manifest["categories"]) == {
        "account", "scores", "derived_scores", "analysis_results", "oauth_clients", "oauth_tokens", "oauth_grants",
        "security_events", "audit_events", "administrator_events", "sign_ins", "failed_sign_ins", "privacy_requests",
    }  # fmt: skip
    entries = {entry["score_id"]: entry for entry in manifest["scores"]}
    assert set(entries) == set(alices_library) == {"chorale", "tune", "ping", "tune-transposed"}
    # Every score is there as MusicXML that music21 reads back as the same music.
    for score_id, entry in entries.items():
        assert entry["musicxml"].endswith(f"{score_id}.musicxml") and entry["musicxml_error"] is None
        music = converter.parse(archive.read(entry["musicxml"]), format="musicxml")
        assert len(music.recurse().notes) > 0, score_id
    chorale = converter.parse(archive.read(entries["chorale"]["musicxml"]), format="musicxml")
    assert len(chorale.parts) == 4 and len(chorale.recurse().notes) == 165
    # The corpus chorale is its music, not the 12-byte path it is stored under, which the manifest names instead.
    assert entries["chorale"]["original"] is None and entries["chorale"]["corpus_path"] == "bach/bwv66.6"
    assert len(archive.read(entries["chorale"]["musicxml"])) > 10_000
    # What a person gave in another format is also there byte for byte.
    for score_id in ("tune", "ping"):
        assert archive.read(entries[score_id]["original"]) == alices_library[score_id]
    assert entries["ping"]["original"].endswith(".mid") and entries["tune"]["original"].endswith(".tnc")
    # The transposition was stored as MusicXML: its MusicXML is its original.
    transposed = entries["tune-transposed"]
    assert transposed["musicxml"] == transposed["original"] == "derived_scores/tune-transposed.musicxml"
    assert archive.read(transposed["musicxml"]) == alices_library["tune-transposed"]
    assert manifest["categories"]["scores"]["count"] == 3 and manifest["categories"]["derived_scores"]["count"] == 1
    everything = b"".join(archive.read(name) for name in archive.namelist())
    assert b"bobs-secret" not in everything and b"bob@example.com" not in everything
    audit_events = json.loads(archive.read("audit_events.json"))
    assert {"tool.import_score", "tool.transpose_score"} <= {e["action"] for e in audit_events}
    readme = archive.read("README.txt").decode()
    assert "you filed it (privacy page)" in readme and "MusicXML" in readme
    assert manifest["request"]["filed_by"]["by"] == "you"


def test_the_export_holds_the_analysis_answers_kept_for_her_scores_and_none_of_bobs(
    alice: Any, bob: Any, call: Any
) -> None:
    call(alice, "import_score", score_id="tune", source="tinyNotation: 4/4 c4 d e f g1", source_type="tinynotation")
    answer = call(alice, "key_analysis", score_id="tune")
    call(bob, "import_score", score_id="bobs-secret", source="tinyNotation: 3/4 a4 b c'", source_type="tinynotation")
    call(bob, "key_analysis", score_id="bobs-secret")
    held = services.subject_inventory(user=alice)
    assert held["analysis_results"] == 1
    request = services.subject_request_create(subject=alice, kind="export")
    services.subject_request_run(request_id=request.pk)
    archive = zipfile.ZipFile(io.BytesIO(bytes(ExportArchive.objects.get(request=request).content)))
    answers = json.loads(archive.read("analysis_results.json"))
    assert [(a["score_id"], a["tool"]) for a in answers] == [("tune", "key_analysis")]
    assert answers[0]["answer"]["key"] == answer["key"]
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["categories"]["analysis_results"] == {"count": 1, "files": ["analysis_results.json"]}
    assert b"bobs-secret" not in b"".join(archive.read(name) for name in archive.namelist())


def test_the_export_holds_her_sign_ins_and_none_of_bobs(alice: Any, bob: Any) -> None:
    from django.test import Client

    for username, password in (("alice", PASSWORD), ("bob", "tr0ub4dor&3 but longer")):
        signed = Client(HTTP_USER_AGENT=f"{username}'s browser").post(
            "/accounts/login/", {"username": username, "password": password}
        )
        assert signed.status_code == 302
    assert services.subject_inventory(user=alice)["sign_ins"] == 1
    request = services.subject_request_create(subject=alice, kind="export")
    services.subject_request_run(request_id=request.pk)
    archive = zipfile.ZipFile(io.BytesIO(bytes(ExportArchive.objects.get(request=request).content)))
    sign_ins = json.loads(archive.read("sign_ins.json"))
    assert [(s["ip"], s["browser"]) for s in sign_ins] == [("127.0.0.1", "alice's browser")]
    assert json.loads(archive.read("manifest.json"))["categories"]["sign_ins"]["count"] == 1


def test_the_export_holds_failed_sign_ins_under_her_name_or_e_mail_and_none_of_bobs(alice: Any, bob: Any) -> None:
    # A failed sign-in has no user: it names her only by what was typed, in whatever case.
    from django.test import Client

    for typed, browser in (("ALICE", "a stranger's browser"), ("alice@example.com", "her phone"), ("bob", "bob's")):
        refused = Client(HTTP_USER_AGENT=browser).post("/accounts/login/", {"username": typed, "password": "not it"})
        assert refused.status_code == 200  # the form again, with its error
    held = services.subject_inventory(user=alice)
    assert (held["failed_sign_ins"], held["security_events"]) == (2, 2)
    request = services.subject_request_create(subject=alice, kind="export")
    services.subject_request_run(request_id=request.pk)
    archive = zipfile.ZipFile(io.BytesIO(bytes(ExportArchive.objects.get(request=request).content)))
    failed = json.loads(archive.read("failed_sign_ins.json"))
    assert sorted((f["name_typed"], f["browser"], f["failures"]) for f in failed) == [
        ("ALICE", "a stranger's browser", 1),
        ("alice@example.com", "her phone", 1),
    ]
    events = json.loads(archive.read("security_events.json"))
    assert sorted((e["kind"], e["detail"]["username"]) for e in events) == [
        ("login_failure", "ALICE"),
        ("login_failure", "alice@example.com"),
    ]
    assert json.loads(archive.read("manifest.json"))["categories"]["failed_sign_ins"]["count"] == 2
    assert "failed_sign_ins.json: failed sign-ins under your name" in archive.read("README.txt").decode()


def test_the_export_holds_the_name_entered_on_her_account(alice: Any) -> None:
    alice.first_name, alice.last_name = "Alice", "Liddell"
    alice.save()
    request = services.subject_request_create(subject=alice, kind="export")
    services.subject_request_run(request_id=request.pk)
    archive = zipfile.ZipFile(io.BytesIO(bytes(ExportArchive.objects.get(request=request).content)))
    account = json.loads(archive.read("account.json"))
    assert (account["first_name"], account["last_name"]) == ("Alice", "Liddell")


def test_the_export_says_what_administrators_did_with_her_data_and_nothing_of_bobs(
    alice: Any, bob: Any, call: Any
) -> None:
    call(alice, "import_score", score_id="tune", source="tinyNotation: 4/4 c4 d e f g1", source_type="tinynotation")
    call(bob, "import_score", score_id="bobs-secret", source="tinyNotation: 3/4 a4 b c'", source_type="tinynotation")
    admin = superuser()
    client = signed_in(admin)
    for score in Score.objects.all():  # the score's page shows its notation
        assert client.get(f"/admin/tools/score/{score.pk}/change/").status_code == 200
    request = services.subject_request_create(subject=alice, kind="export", handled_by=admin, via="admin")
    services.subject_request_approve(request=request, by=admin, run_now=True)
    services.subject_request_run(request_id=request.pk)
    archive = zipfile.ZipFile(io.BytesIO(bytes(ExportArchive.objects.get(request=request).content)))
    events = json.loads(archive.read("administrator_events.json"))
    assert [(e["action"], e["target"], e["outcome"]) for e in events] == [
        ("admin.render_score", "score:tune", "success"),
        ("privacy.export_requested", f"request:{request.pk}", "pending"),
    ]
    assert b"bobs-secret" not in b"".join(archive.read(name) for name in archive.namelist())


def test_the_export_holds_a_block_placed_on_her_account(alice: Any, bob: Any) -> None:
    until = timezone.now() + timedelta(minutes=5)
    Block.objects.create(target=Block.Target.USER, value=str(alice.pk), reason="too many refused calls", until=until)
    Block.objects.create(target=Block.Target.USER, value=str(bob.pk), reason="bob's own", until=until)
    request = services.subject_request_create(subject=alice, kind="export")
    services.subject_request_run(request_id=request.pk)
    archive = zipfile.ZipFile(io.BytesIO(bytes(ExportArchive.objects.get(request=request).content)))
    blocks = json.loads(archive.read("account.json"))["blocks"]
    assert [(b["reason"], b["until"], b["lifted"]) for b in blocks] == [
        ("too many refused calls", until.isoformat(), False)
    ]


def test_the_export_holds_how_she_configured_a_client_of_her_own(alice: Any, bob: Any) -> None:
    from oauth2_provider.models import Application

    Application.objects.create(
        name="alice's notebook",
        user=alice,
        client_type=Application.CLIENT_PUBLIC,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris="http://127.0.0.1:8765/callback https://alice.example/cb",
    )
    request = services.subject_request_create(subject=alice, kind="export")
    services.subject_request_run(request_id=request.pk)
    archive = zipfile.ZipFile(io.BytesIO(bytes(ExportArchive.objects.get(request=request).content)))
    (client,) = json.loads(archive.read("oauth_clients.json"))
    assert client["name"] == "alice's notebook" and client["registered_by_you"] is True
    assert client["grant_type"] == "authorization-code"
    assert client["redirect_uris"] == ["http://127.0.0.1:8765/callback", "https://alice.example/cb"]


def test_the_export_lists_every_token_and_grant_but_never_a_token_itself(
    alice: Any, bob: Any, chorale: Any, token_for: Any
) -> None:
    raw_access = token_for(alice)
    access = AccessToken.objects.get(user=alice)
    application = access.application
    refresh_raw = "a-refresh-token-value-that-must-not-leak"
    RefreshToken.objects.create(user=alice, application=application, token=refresh_raw, access_token=access)
    revoked = RefreshToken.objects.create(user=alice, application=application, token="an-old-one-revoked-long-ago")
    revoked.revoke()
    Grant.objects.create(
        user=alice,
        application=application,
        code="a-pending-authorization-code",
        expires=timezone.now() + timedelta(minutes=1),
        redirect_uri="http://127.0.0.1:9/callback",
        scope="music21:read",
        code_challenge="x" * 43,
        code_challenge_method="S256",
    )
    token_for(bob)  # another person's token: not in her export

    request = services.subject_request_create(subject=alice, kind="export")
    DataSubjectRequest.objects.filter(pk=request.pk).update(status="running")
    archive = zipfile.ZipFile(io.BytesIO(bytes(services.subject_export_build(request=request).content)))

    tokens = json.loads(archive.read("oauth_tokens.json"))
    assert sorted((t["kind"], t["revoked"]) for t in tokens) == [
        ("access token", False), ("refresh token", False), ("refresh token", True),
    ]  # fmt: skip
    for token in tokens:
        assert token["application"] == application.name and token["client_id"] == application.client_id
        assert token["created"]
    live = next(t for t in tokens if t["kind"] == "access token")
    assert live["scopes"] == ["music21:read", "music21:write"] and live["expires"] and not live["expired"]
    grants = json.loads(archive.read("oauth_grants.json"))
    assert [(g["application"], g["scopes"]) for g in grants] == [(application.name, ["music21:read"])]
    assert [c["name"] for c in json.loads(archive.read("oauth_clients.json"))] == [application.name]
    everything = b"".join(archive.read(name) for name in archive.namelist())
    for secret in (raw_access, access.token_checksum, refresh_raw, "a-pending-authorization-code"):
        assert secret.encode() not in everything
    assert b"test client of bob" not in everything


def test_every_download_of_an_export_is_counted_even_when_two_happen_at_once(
    alice: Any, monkeypatch: Any, celery_worker: None
) -> None:
    from django.db.models import F, QuerySet

    request = services.subject_request_create(subject=alice, kind="export")
    tasks.subject_request_start(request)
    _wait_for(request.pk)
    real_first = QuerySet.first

    def another_download_meanwhile(queryset: Any) -> Any:
        found = real_first(queryset)  # this download has read the archive; another one is counted before it writes
        if isinstance(found, ExportArchive):
            ExportArchive.objects.filter(pk=found.pk).update(downloads=F("downloads") + 1)
        return found

    monkeypatch.setattr(QuerySet, "first", another_download_meanwhile)
    export_service.subject_export_download(request=request, by=alice)
    assert ExportArchive.objects.get(request=request).downloads == 2


def test_an_export_filed_by_an_administrator_says_who_filed_it(alice: Any, chorale: Any) -> None:
    admin = superuser()
    request = services.subject_request_create(subject=alice, kind="export", handled_by=admin, via="admin")
    services.subject_request_approve(request=request, by=admin)
    DataSubjectRequest.objects.filter(pk=request.pk).update(status="running")
    archive = zipfile.ZipFile(io.BytesIO(bytes(services.subject_export_build(request=request).content)))
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["request"]["filed_by"] == {
        "by": "administrator", "administrator": "root", "via": "admin", "at": request.requested_at.isoformat(),
    }  # fmt: skip
    readme = archive.read("README.txt").decode()
    assert "an administrator (root) filed it for you on" in readme
    assert f"{request.requested_at:%d %B %Y}" in readme
    # Her privacy page says so too.
    page = signed_in(alice).get("/privacy/").content.decode()
    assert "filed by an administrator, root" in page
    # The filing is the administrator's act in the audit trail, naming her by pseudonym only.
    filed = AuditEvent.objects.get(action="privacy.export_requested")
    assert filed.actor == SubjectKey.objects.get(user=admin).pseudonym
    assert filed.detail == {"subject": SubjectKey.objects.get(user=alice).pseudonym}


def test_her_page_names_the_administrator_who_filed_a_request_not_the_one_who_approved_it(alice: Any) -> None:
    from tests.support import staff_user

    filer = superuser()
    request = services.subject_request_create(subject=alice, kind="erasure", handled_by=filer, via="admin")
    services.subject_request_approve(request=request, by=staff_user("approver"))
    page = signed_in(alice).get("/privacy/").content.decode()
    assert "filed by an administrator, root" in page and "approver" not in page


def test_her_page_offers_to_cancel_an_erasure_only_while_it_can_be(alice: Any) -> None:
    request = services.subject_request_create(subject=alice, kind="erasure", password=PASSWORD)
    client = signed_in(alice)
    page = " ".join(client.get("/privacy/").content.decode().split())
    assert f"Your erasure is scheduled for {request.scheduled_for:%-d %b %Y %H:%M} UTC. You can cancel it" in page
    DataSubjectRequest.objects.filter(pk=request.pk).update(status="running")
    page = " ".join(client.get("/privacy/").content.decode().split())
    assert "Your erasure is running: it can no longer be cancelled." in page and "You can cancel" not in page


def test_an_erasure_deletes_her_expired_sessions_too(alice: Any, bob: Any) -> None:
    from django.contrib.sessions.models import Session

    signed_in(alice)
    signed_in(bob)
    Session.objects.update(expire_date=timezone.now() - timedelta(days=1))  # both signed in long ago
    signed_in(alice)
    request = _erasure_due(alice)
    services.subject_request_run(request_id=request.pk)
    left = [s.get_decoded().get("_auth_user_id") for s in Session.objects.all()]
    assert left == [str(bob.pk)]


def test_an_erasure_keeps_her_pending_export_as_a_cancelled_record(alice: Any, chorale: Any) -> None:
    admin = superuser()
    export = services.subject_request_create(subject=alice, kind="export", handled_by=admin, via="admin")
    erasure = services.subject_request_create(subject=alice, kind="erasure", handled_by=admin, via="admin")
    services.subject_request_approve(request=erasure, by=admin, run_now=True)
    services.subject_request_run(request_id=erasure.pk)

    export.refresh_from_db()
    assert export.status == "cancelled" and export.subject is None
    assert "superseded by erasure" in export.note and f"request #{erasure.pk}" in export.note
    assert export.completed_at is not None and export.subject_pseudonym
    erasure.refresh_from_db()
    assert erasure.status == "completed"
    assert f"#{export.pk} (export) cancelled: superseded by erasure" in erasure.note
    done = AuditEvent.objects.get(action="privacy.erasure")
    assert done.detail["requests_cancelled"] == [export.pk]
    cancelled = AuditEvent.objects.get(action="privacy.export_cancelled")
    assert cancelled.detail == {"reason": "superseded by erasure", "erasure": erasure.pk}
    assert cancelled.actor == done.actor == export.subject_pseudonym
    assert services.subject_requests_run_due() == 0  # nothing left to run for her


def test_an_export_running_when_the_erasure_runs_is_thrown_away(alice: Any, chorale: Any) -> None:
    export = services.subject_request_create(subject=alice, kind="export")
    DataSubjectRequest.objects.filter(pk=export.pk).update(status="running")  # a worker is building it
    erasure = _erasure_due(alice)
    services.subject_request_run(request_id=erasure.pk)
    export.refresh_from_db()
    assert export.status == "cancelled" and "superseded by erasure" in export.note


def test_one_failing_request_does_not_hold_up_the_others_that_are_due(alice: Any, bob: Any, monkeypatch: Any) -> None:
    from django.core.management.base import CommandError

    from apps.compliance.services import requests as requests_service

    build = requests_service.subject_export_build

    def build_failing_for_alice(*, request: DataSubjectRequest) -> Any:
        if request.subject == alice:
            raise RuntimeError("the archive could not be written")
        return build(request=request)

    monkeypatch.setattr(requests_service, "subject_export_build", build_failing_for_alice)
    hers = services.subject_request_create(subject=alice, kind="export")
    his = services.subject_request_create(subject=bob, kind="export")
    with pytest.raises(CommandError) as failed:
        call_command("run_due_requests", stdout=StringIO())  # the periodic task's work, hers first (filed first)
    assert str(failed.value).startswith(f"1 of 2 due request(s) failed: #{hers.pk} (RuntimeError)")
    assert DataSubjectRequest.objects.get(pk=hers.pk).status == "failed"
    assert DataSubjectRequest.objects.get(pk=his.pk).status == "completed"  # it waited for the next run
    assert ExportArchive.objects.filter(request=his).exists()


def test_an_export_cancelled_while_it_is_built_stores_nothing(alice: Any, chorale: Any, monkeypatch: Any) -> None:
    export = services.subject_request_create(subject=alice, kind="export")
    registered = export_service.holdings

    def holdings_while_an_erasure_cancels_the_export() -> Any:  # the erasure's transaction, mid-build
        DataSubjectRequest.objects.filter(pk=export.pk).update(status="cancelled", note="superseded by erasure")
        return registered()

    monkeypatch.setattr(export_service, "holdings", holdings_while_an_erasure_cancels_the_export)
    services.subject_request_run(request_id=export.pk)
    export.refresh_from_db()
    assert export.status == "cancelled" and export.note == "superseded by erasure"  # not "failed"
    assert not ExportArchive.objects.exists()


def test_erasure_leaves_no_row_that_refers_to_alice(
    alices_library: dict[str, bytes], alice: Any, bob: Any, token_for: Any, call: Any, live_site: str
) -> None:
    import httpx2 as httpx

    token = token_for(alice)
    call(alice, "key_analysis", score_id="chorale")  # now parsed and cached in this process
    chorale_pk = Score.objects.get(owner=alice, score_id="chorale").pk
    assert parsed_scores.holds_score(chorale_pk)
    invoke_tool(
        "score_info",
        {"score_id": "chorale"},
        caller=Caller(user=alice, scopes=frozenset({"music21:read"}), ip="198.51.100.4"),
    )
    SecurityEvent.objects.create(kind="login_failure", user=alice, ip="198.51.100.4", detail={"username": "alice"})
    alice_id = alice.pk
    Block.objects.create(
        target=Block.Target.USER, value=str(alice_id), reason="test", until=timezone.now() + timedelta(minutes=5)
    )

    request = _erasure_due(alice)
    call_command("run_due_requests", stdout=StringIO())  # the periodic task's work
    assert DataSubjectRequest.objects.get(pk=request.pk).status == "completed"

    assert not get_user_model().objects.filter(pk=alice_id).exists()
    checked = []
    for model in apps.get_models():
        for field in model._meta.get_fields():
            if (field.many_to_one or field.one_to_one) and field.concrete and field.related_model is get_user_model():
                assert not model._default_manager.filter(**{field.attname: alice_id}).exists(), (model, field.name)
                checked.append(f"{model._meta.label}.{field.name}")
    # Scores, tokens, grants, clients, security events, requests, subject keys, sign-in and admin history...
    assert {"tools.Score.owner", "oauth2_provider.AccessToken.user", "compliance.SubjectKey.user"} <= set(checked)
    assert len(checked) >= 10
    assert not SubjectKey.objects.filter(user_id=alice_id).exists()
    assert not parsed_scores.holds_score(chorale_pk)
    if settings.REDIS_URL:  # her id does not linger in Redis (her rate-limit buckets held it)
        held = [key for key in shared_redis().scan_iter(f"{settings.GUARD_NAMESPACE}:*") if b":user:" in key]
        assert not [key for key in held if key.endswith(f":user:{alice_id}".encode())]
    assert Score.objects.filter(owner=bob).count() == 1  # bob keeps everything
    assert SecurityEvent.objects.filter(ip="198.51.100.4").count() == 0  # anonymised, not linked
    assert not Block.objects.filter(target=Block.Target.USER, value=str(alice_id)).exists()  # her id goes too

    # Her token no longer opens /mcp.
    response = httpx.post(
        f"{live_site}/mcp",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"},
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
    )
    assert response.status_code == 401

    # The trail still verifies, and says the erasure happened.
    out = StringIO()
    call_command("verify_audit_chain", stdout=out)
    assert "verified" in out.getvalue()
    erased = AuditEvent.objects.get(action="privacy.erasure")
    assert erased.outcome == "completed" and erased.detail["scores"] == 4
    # Her past events remain, but nothing links them to her any more.
    assert AuditEvent.objects.filter(actor=erased.actor, action="tool.import_score").count() == 3
    assert not SubjectKey.objects.filter(pseudonym=erased.actor).exists()


def test_an_erasure_leaves_her_id_in_no_block_history_nor_redis_key(alice: Any, bob: Any, settings: Any) -> None:
    """Blocked after too many security events (the cache counted them under her id), her block lifted by an
    administrator: the erasure removes the block's history and the counts, and keeps bob's."""
    from auditlog.models import LogEntry

    from apps.security.events import block_lift, security_event_record

    settings.SECURITY_BLOCK_THRESHOLD = 3
    for person in (alice, bob):
        for _ in range(3):
            security_event_record(kind="scope_violation", user=person, ip="198.51.100.9", tool="import_score")
        security_event_record(kind="rate_limit", user=person, ip="198.51.100.9")
    block_lift(block=Block.objects.get(value=str(alice.pk)))
    bobs_block = Block.objects.get(value=str(bob.pk))
    alice_id = alice.pk
    assert LogEntry.objects.get_for_model(Block).count() == 3  # hers placed and lifted, bob's placed

    _erasure_due(alice)
    services.subject_requests_run_due()

    assert list(LogEntry.objects.get_for_model(Block).values_list("object_pk", flat=True)) == [str(bobs_block.pk)]
    if settings.REDIS_URL:  # the keys that counted her events named her id; bob's stay
        held = [key.decode() for key in shared_redis().scan_iter(f"*{settings.GUARD_NAMESPACE}:*")]
        assert not [key for key in held if f":user:{alice_id}:" in key or key.endswith(f":user:{alice_id}")]
        assert [key for key in held if key.endswith(f":recorded:rate_limit:user:{bob.pk}")]


def test_the_trail_names_a_blocked_account_by_its_pseudonym_never_its_id(alice: Any, settings: Any) -> None:
    from apps.compliance.audit import subject_for
    from apps.security.events import block_lift, security_event_record

    alice_id, pseudonym = alice.pk, subject_for(alice).pseudonym
    settings.SECURITY_BLOCK_THRESHOLD = 3
    for _ in range(3):
        security_event_record(kind="scope_violation", user=alice, ip="198.51.100.9", tool="import_score")
    block_lift(block=Block.objects.get(value=str(alice.pk)))

    events = AuditEvent.objects.filter(action__in=["security.blocked", "security.block_lifted"])
    assert sorted(events.values_list("action", "target", "actor")) == [
        ("security.block_lifted", f"user:{pseudonym}", pseudonym),
        ("security.blocked", f"user:{pseudonym}", pseudonym),
    ]
    _erasure_due(alice)
    services.subject_requests_run_due()
    assert not AuditEvent.objects.filter(target=f"user:{alice_id}").exists()  # the trail outlives her


def test_erasure_needs_the_password_and_waits_for_the_grace_period(alice: Any, chorale: Any) -> None:
    with pytest.raises(RequestRefused, match="password"):
        services.subject_request_create(subject=alice, kind="erasure", password="guess")
    request = services.subject_request_create(subject=alice, kind="erasure", password=PASSWORD)
    assert request.status == "scheduled" and request.scheduled_for > request.requested_at
    assert services.subject_requests_run_due() == 0  # the grace period has not passed
    with pytest.raises(RequestRefused, match="already open"):
        services.subject_request_create(subject=alice, kind="erasure", password=PASSWORD)
    services.subject_request_cancel(request=request, by=alice)
    DataSubjectRequest.objects.filter(pk=request.pk).update(scheduled_for=request.requested_at)
    assert services.subject_requests_run_due() == 0  # cancelled requests never run
    assert Score.objects.filter(owner=alice).count() == 1


@pytest.mark.parametrize(("kind", "url"), [("export", "/privacy/export"), ("erasure", "/privacy/erasure")])
def test_a_request_asked_for_four_times_at_once_is_filed_once(alice: Any, kind: str, url: str) -> None:
    """A double click, or the same page in several tabs: one request is filed, the others are told it is open."""
    start = threading.Barrier(4)
    pages: list[str] = []

    def ask() -> None:
        client = signed_in(alice)
        start.wait()
        try:
            pages.append(client.post(url, {"password": PASSWORD}, follow=True).content.decode())
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    filed = list(DataSubjectRequest.objects.filter(subject=alice, kind=kind).order_by("requested_at"))
    # Never two open at once: a request was filed only once the one before it was over. (Without a broker an
    # export is built in the request that filed it, and may be over before the next asks.)
    for earlier, later in itertools.pairwise(filed):
        assert earlier.completed_at is not None and earlier.completed_at <= later.requested_at
    refused = [page for page in pages if f"An {kind} request is already open for this account." in page]
    assert len(pages) == 4 and len(refused) == 4 - len(filed)


def test_an_administrator_approves_a_request_filed_for_someone(alice: Any, chorale: Any, celery_worker: None) -> None:
    admin = superuser()
    request = services.subject_request_create(subject=alice, kind="erasure", handled_by=admin, via="admin")
    assert request.status == "pending"
    assert services.subject_requests_run_due() == 0
    services.subject_request_approve(request=request, by=admin, run_now=True)
    tasks.subject_request_start(request)  # as the admin's actions do
    _wait_for(request.pk)
    assert not get_user_model().objects.filter(username="alice").exists()


def test_an_export_asked_for_on_the_privacy_page_is_built(alice: Any, chorale: Any, celery_worker: None) -> None:
    client = signed_in(alice)
    assert client.post("/privacy/export").status_code == 302
    request = DataSubjectRequest.objects.get(subject=alice, kind="export")
    assert _wait_for(request.pk).archive.size > 0  # handed to Celery by the view, once its row was committed


def test_an_unknown_kind_is_refused_by_name(alice: Any) -> None:
    with pytest.raises(RequestRefused, match="'copy'"):
        services.subject_request_create(subject=alice, kind="copy")


def test_other_processes_drop_erased_scores_from_their_caches(alice: Any, chorale: Any, monkeypatch: Any) -> None:
    from music21 import stream

    from apps.tools.services import cache as cache_module

    # Another process's cache, holding alice's chorale (its own instance; they meet only through the shared cache).
    elsewhere = cache_module.ParsedScoreCache(capacity=10)
    chorale_pk = Score.objects.get(owner=alice, score_id="chorale").pk
    elsewhere.get((0, ""))  # its first look at the purge list
    elsewhere.put((chorale_pk, "h"), stream.Score())
    elsewhere.put((999_999, "h"), stream.Score())
    monkeypatch.setattr(cache_module, "PURGE_CHECK_SECONDS", 0.0)
    _erasure_due(alice)
    services.subject_requests_run_due()
    elsewhere.get((0, ""))  # its next lookup reads the purge list
    assert (chorale_pk, "h") not in elsewhere and (999_999, "h") in elsewhere
