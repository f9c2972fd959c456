"""The admin console: every page renders for a superuser, and each staff role sees exactly its part."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.db import OperationalError

from apps.core.errors import ServiceUnavailable
from apps.security import breakers
from apps.tools.invocation import invoke_tool
from apps.tools.registry import TOOLS, Tool, ToolArguments
from tests.support import signed_in, staff_user, superuser


def _staff(username: str, role: str | None) -> Any:
    user = staff_user(username)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


def test_every_registered_model_has_a_list_and_an_add_or_read_page_for_a_superuser(alice: Any, chorale: Any) -> None:
    root = superuser()
    client = signed_in(root)
    assert client.get("/admin/").status_code == 200
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        url = f"/admin/{meta.app_label}/{meta.model_name}/"
        assert client.get(url).status_code == 200, url
        if model_admin.has_add_permission(client.get(url).wsgi_request):
            assert client.get(f"{url}add/").status_code == 200, f"{url}add/"
        first = model._default_manager.first()
        if first is not None:
            assert client.get(f"{url}{first.pk}/change/").status_code == 200, f"{url}{first.pk}/change/"
    assert client.get("/admin/security/breakers/").status_code == 200


ROLE_PAGES = {
    "/admin/compliance/datasubjectrequest/": {"compliance officer"},
    "/admin/compliance/auditevent/": {"compliance officer", "security officer"},
    "/admin/compliance/retentionpolicy/": {"compliance officer"},
    "/admin/auditlog/logentry/": {"compliance officer"},
    "/admin/security/securityevent/": {"security officer"},
    "/admin/security/block/": {"security officer"},
    "/admin/security/breakers/": {"security officer"},
    "/admin/oauth2_provider/application/": {"security officer"},
    "/admin/tools/score/": set(),
    "/admin/auth/user/": set(),
}


@pytest.mark.parametrize("role", ["compliance officer", "security officer", None])
def test_each_role_sees_exactly_its_pages(db: None, role: str | None) -> None:
    client = signed_in(_staff("officer", role))
    for url, roles in ROLE_PAGES.items():
        status = client.get(url).status_code
        assert (status == 200) == (role in roles), f"{role} on {url}: {status}"


def test_a_compliance_officer_cannot_change_an_oauth_client(db: None) -> None:
    from oauth2_provider.models import Application

    application = Application.objects.create(
        name="c", client_type="public", authorization_grant_type="authorization-code", redirect_uris="http://127.0.0.1/"
    )
    client = signed_in(_staff("officer", "compliance officer"))
    response = client.post(f"/admin/oauth2_provider/application/{application.pk}/change/", {"name": "renamed"})
    assert response.status_code == 403
    application.refresh_from_db()
    assert application.name == "c"


def test_a_staff_member_who_may_only_view_requests_cannot_approve_run_or_cancel_them(alice: Any) -> None:
    from django.contrib.auth.models import Permission

    from apps.compliance import services
    from apps.compliance.models import DataSubjectRequest

    filed = services.subject_request_create(subject=alice, kind="erasure", handled_by=superuser(), via="admin")
    viewer = staff_user("viewer")
    viewer.user_permissions.add(Permission.objects.get(codename="view_datasubjectrequest"))
    client = signed_in(viewer)
    listed = client.get("/admin/compliance/datasubjectrequest/").content.decode()
    assert 'name="_selected_action"' not in listed  # no checkbox: no action is offered
    for action in ("approve", "run_now", "cancel"):
        client.post("/admin/compliance/datasubjectrequest/", {"action": action, "_selected_action": [filed.pk]})
        filed.refresh_from_db()
        assert filed.status == DataSubjectRequest.Status.PENDING, action
    assert alice.__class__.objects.filter(pk=alice.pk).exists()
    officer = signed_in(_staff("officer", "compliance officer"))
    officer.post("/admin/compliance/datasubjectrequest/", {"action": "cancel", "_selected_action": [filed.pk]})
    filed.refresh_from_db()
    assert filed.status == DataSubjectRequest.Status.CANCELLED


def test_a_staff_member_who_may_only_view_schedules_or_tokens_is_offered_no_action_that_changes_them(
    alice: Any, token_for: Any
) -> None:
    """The actions of the apps we embed, as ours: running or disabling a schedule (retention deletes audit events),
    revoking a token, need the right to change them."""
    from django.contrib.auth.models import Permission
    from django_celery_beat.models import IntervalSchedule, PeriodicTask
    from oauth2_provider.models import AccessToken

    from apps.compliance.models import AuditEvent

    every_minute = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.MINUTES)
    retention = PeriodicTask.objects.create(
        name="retention now", task="compliance.apply_retention", interval=every_minute, enabled=True
    )
    token_for(alice)
    token = AccessToken.objects.get(user=alice)
    viewer = staff_user("viewer")
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_periodictask", "view_accesstoken"]))
    client = signed_in(viewer)
    for url, actions, pk in [
        ("/admin/django_celery_beat/periodictask/", ["disable_tasks", "toggle_tasks", "run_tasks"], retention.pk),
        ("/admin/oauth2_provider/accesstoken/", ["revoke_tokens"], token.pk),
    ]:
        assert 'name="_selected_action"' not in client.get(url).content.decode(), url  # no checkbox: no action
        for action in actions:
            client.post(url, {"action": action, "_selected_action": [pk]})
    retention.refresh_from_db()
    assert retention.enabled and retention.total_run_count == 0
    assert AccessToken.objects.filter(pk=token.pk).exists()
    assert not AuditEvent.objects.filter(action="retention.run").exists()  # retention did not run
    # Who may change schedules is offered them.
    viewer.user_permissions.add(Permission.objects.get(codename="change_periodictask"))
    signed_in(viewer).post(
        "/admin/django_celery_beat/periodictask/", {"action": "disable_tasks", "_selected_action": [retention.pk]}
    )
    retention.refresh_from_db()
    assert not retention.enabled


def test_a_security_officer_disables_a_client_but_cannot_rotate_and_read_its_secret(db: None) -> None:
    from oauth2_provider.models import Application

    application = Application.objects.create(
        name="billing robot", client_type="confidential", authorization_grant_type="client-credentials"
    )
    secret_before = application.client_secret
    client = signed_in(_staff("sec", "security officer"))
    page = client.post(
        "/admin/oauth2_provider/application/",
        {"action": "rotate_secrets", "_selected_action": [application.pk]},
        follow=True,
    ).content.decode()
    assert "shown only now" not in page
    application.refresh_from_db()
    assert application.client_secret == secret_before
    client.post(
        "/admin/oauth2_provider/application/", {"action": "disable_clients", "_selected_action": [application.pk]}
    )
    application.refresh_from_db()
    assert application.policy.disabled


def test_a_staff_member_who_may_only_view_users_cannot_start_their_erasure_or_revoke_their_tokens(
    alice: Any, token_for: Any
) -> None:
    from django.contrib.auth.models import Permission
    from oauth2_provider.models import AccessToken

    from apps.compliance.models import DataSubjectRequest

    token_for(alice)
    viewer = staff_user("viewer")
    viewer.user_permissions.add(Permission.objects.get(codename="view_user"))
    client = signed_in(viewer)
    for action in ("start_erasure", "start_export", "revoke_tokens"):
        client.post("/admin/auth/user/", {"action": action, "_selected_action": [alice.pk]})
    assert not DataSubjectRequest.objects.filter(subject=alice).exists()
    assert AccessToken.objects.filter(user=alice).count() == 1


def test_an_account_is_not_deleted_from_the_admin_but_erased(alice: Any) -> None:
    from auditlog.models import LogEntry

    client = signed_in(superuser())
    assert client.post(f"/admin/auth/user/{alice.pk}/delete/", {"post": "yes"}).status_code == 403
    client.post("/admin/auth/user/", {"action": "delete_selected", "_selected_action": [alice.pk], "post": "yes"})
    assert alice.__class__.objects.filter(pk=alice.pk).exists()
    assert not LogEntry.objects.filter(object_repr="alice", action=LogEntry.Action.DELETE).exists()
    page = client.get(f"/admin/auth/user/{alice.pk}/change/").content.decode()
    assert "deletelink" not in page


def test_a_security_officer_resets_an_open_breaker_and_calls_go_through(alice: Any, settings: Any) -> None:
    settings.CB_FAILURE_THRESHOLD = 1
    settings.CB_RECOVERY_TIMEOUT = 300
    state = {"fail": True}

    def flaky() -> dict[str, Any]:
        if state["fail"]:
            raise OperationalError("the database went away")  # a dependency failing: what a breaker counts
        return {"ok": True}

    TOOLS["test_flaky_export"] = Tool(
        name="test_flaky_export", description="test only", arguments=ToolArguments, scope=None, group="export",
        function=lambda caller, args: flaky(),
    )  # fmt: skip
    try:
        from apps.tools.invocation import Caller

        caller = Caller.operator(alice)
        with pytest.raises(ServiceUnavailable):
            invoke_tool("test_flaky_export", {}, caller=caller)
        assert breakers.breaker_states()["export"]["state"] == "open"
        client = signed_in(_staff("sec", "security officer"))
        page = client.get("/admin/security/breakers/").content.decode()
        assert 'data-group="export"' in page and ">open<" in page
        client.post("/admin/security/breakers/", {"group": "export"})
        state["fail"] = False
        assert invoke_tool("test_flaky_export", {}, caller=caller)["ok"] is True
    finally:
        TOOLS.pop("test_flaky_export", None)


def _rows(page: str) -> int:
    """How many rows an admin list shows (each row's first cell is its `th`)."""
    body = page.split('id="result_list"', 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return body.count("<tr")


def _href(page: str, element_id: str) -> str:
    found = re.search(rf'<a (?:[^>]*\s)?id="{element_id}"[^>]*href="([^"]+)"', page) or re.search(
        rf'<a href="([^"]+)"[^>]*>\s*<strong id="{element_id}"', page
    )
    assert found, element_id
    return html.unescape(found.group(1))


def test_the_dashboard_counts_the_calls_of_the_last_24_hours_and_each_count_opens_its_list(
    alice: Any, call: Any
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from apps.compliance import services
    from apps.compliance.models import AuditEvent, DataSubjectRequest
    from apps.core.errors import NotFound
    from apps.security.models import SecurityEvent

    call(alice, "import_score", score_id="tune", source="tinyNotation: 4/4 c4 d e f", source_type="tinynotation")
    for _ in range(3):
        call(alice, "score_info", score_id="tune")
    with pytest.raises(NotFound):
        call(alice, "score_info", score_id="missing")
    old = AuditEvent.objects.create(action="tool.score_info", outcome="success")
    AuditEvent.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=30))  # outside the window
    security_event = SecurityEvent.objects.create(kind="cross_tenant", client_id="client-x")
    root = superuser()
    # One request awaiting approval (filed by an administrator) and one scheduled: both are open.
    services.subject_request_create(subject=alice, kind="export", handled_by=root, via="admin")
    services.subject_request_create(subject=alice, kind="erasure", password="correct horse battery staple")
    client = signed_in(root)
    page = client.get("/admin/").content.decode()

    assert '<strong id="calls-24h">5</strong>' in page and '<strong id="errors-24h">1</strong>' in page
    assert _rows(client.get(_href(page, "calls-24h")).content.decode()) == 5
    assert _rows(client.get(_href(page, "errors-24h")).content.decode()) == 1

    # Every tool is listed, with its calls, the calls that did not succeed and their mean time.
    tools = re.findall(r'<tr data-tool="([^"]+)">', page)
    assert sorted(tools) == sorted(TOOLS)
    row = page.split('<tr data-tool="score_info">', 1)[1].split("</tr>", 1)[0]
    calls = re.search(r'class="calls number"><a href="([^"]+)">4</a>', row)
    errors = re.search(r'class="errors number"><a href="([^"]+)">1</a>', row)
    assert calls and errors and re.search(r'class="mean number">[\d.]+ (ms|s)<', row)
    assert _rows(client.get(html.unescape(calls.group(1))).content.decode()) == 4
    assert _rows(client.get(html.unescape(errors.group(1))).content.decode()) == 1

    assert ">2 open data-subject requests</a>" in page
    assert _rows(client.get(_href(page, "open-requests")).content.decode()) == 2
    DataSubjectRequest.objects.filter(kind="export").update(due_at=timezone.now() - timedelta(days=1))
    page = client.get("/admin/").content.decode()
    assert ">1 overdue</a>" in page
    assert _rows(client.get(_href(page, "overdue-requests")).content.decode()) == 1

    assert _rows(client.get(_href(page, "security-events-24h")).content.decode()) == 1
    event_url = f"/admin/security/securityevent/{security_event.pk}/change/"
    assert f'<a href="{event_url}">' in page and "another user&#x27;s score · client-x" in page
    assert client.get(event_url).status_code == 200

    assert 'href="/admin/security/breakers/"' in page and 'href="/compliance/report/view"' in page
    # Two charts of 24 hourly bars, each with a labelled time axis.
    assert page.count("<rect") == 48
    assert page.count('class="axis-title"') == 2 and "hour of the day" in page
    first_hour = f"{timezone.now() - timedelta(hours=23):%H}:00"
    assert 'class="tick" x="' in page and f">{first_hour}</text>" in page


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        # A NUL character in a text filter (PostgreSQL refuses it), in our lists and Django's own filters alike.
        ("/admin/compliance/auditevent/?action=%00", "'action' holds a NUL character (%00)"),
        ("/admin/compliance/datasubjectrequest/?status__exact=%00", "'status__exact' holds a NUL character (%00)"),
        ("/admin/axes/accessattempt/?path_info=%00", "'path_info' holds a NUL character (%00)"),
        # A year past 9999 in a date drill-down.
        ("/admin/security/securityevent/?created_at__year=99999999999999999999", "created_at__year: "),
        # django-auditlog's filter by model, which takes an id.
        ("/admin/auditlog/logentry/?resource_type=abc", "resource_type: Field 'id' expected a number but got 'abc'"),
    ],
)
def test_a_list_filtered_by_a_value_it_cannot_take_shows_the_whole_list_and_says_why(
    alice: Any, url: str, problem: str
) -> None:
    from apps.compliance import services

    root = superuser()
    services.subject_request_create(subject=alice, kind="export", handled_by=root, via="admin")
    client = signed_in(root)
    response = client.get(url, follow=True)
    assert response.status_code == 200
    assert response.redirect_chain[-1][0].endswith("?e=1")  # the list, unfiltered
    page = html.unescape(response.content.decode())
    assert "This list cannot be filtered as the address asks (" in page and problem in page


def test_the_breakers_page_is_listed_under_security_in_the_app_list(db: None) -> None:
    client = signed_in(_staff("sec", "security officer"))
    security = client.get("/admin/security/").content.decode()
    assert '<a href="/admin/security/breakers/">Circuit breakers</a>' in security
    assert "Circuit breakers" not in signed_in(_staff("officer", "compliance officer")).get("/admin/").content.decode()


def test_rotating_a_secret_from_the_admin_retires_the_old_one(live_site: str) -> None:
    import re

    import httpx2
    from oauth2_provider.models import Application

    from tests.security.oauth_flow import register_service

    registered = register_service(live_site)
    application = Application.objects.get(client_id=registered["client_id"])
    root = superuser()
    response = signed_in(root).post(
        "/admin/oauth2_provider/application/",
        {"action": "rotate_secrets", "_selected_action": [application.pk]},
        follow=True,
    )
    new_secret = re.search(r"shown only now: ([A-Za-z0-9]+)", response.content.decode()).group(1)

    def token_with(secret: str) -> int:
        return httpx2.post(
            f"{live_site}/o/token/",
            data={"grant_type": "client_credentials", "scope": "music21:read"},
            auth=(registered["client_id"], secret),
        ).status_code

    assert token_with(registered["client_secret"]) == 401
    assert token_with(new_secret) == 200


def test_an_administrator_downloads_a_scores_source_and_starts_a_persons_export(alice: Any, call: Any) -> None:
    import re

    from apps.compliance.models import DataSubjectRequest
    from apps.tools.models import Score

    source = "tinyNotation: 3/4 e4 f# g a2."
    call(alice, "import_score", score_id="waltz", source=source, source_type="tinynotation")
    score = Score.objects.get(score_id="waltz")
    root = superuser()
    client = signed_in(root)
    page = client.get(f"/admin/tools/score/{score.pk}/change/").content.decode()
    assert "data:image/svg+xml;base64," in page and "download-source" in page
    assert client.get(f"/admin/tools/score/{score.pk}/source/").content == source.encode()
    user_page = client.get(f"/admin/auth/user/{alice.pk}/change/").content.decode()
    assert "waltz" in user_page  # her scores are listed on her page
    trail = re.search(r'href="([^"]+)" class="audit-trail"', user_page).group(1).replace("&amp;", "&")
    assert "tool.import_score" in client.get(trail).content.decode()  # her events, found by her pseudonym
    client.post("/admin/auth/user/", {"action": "start_export", "_selected_action": [alice.pk]})
    filed = DataSubjectRequest.objects.get(subject=alice)
    assert filed.kind == "export" and filed.status == "pending" and filed.handled_by == root


def test_tokens_revoked_from_the_admin_stop_working_on_mcp(live_site: str, alice: Any, token_for: Any) -> None:
    import httpx2
    from oauth2_provider.models import AccessToken

    token = token_for(alice)

    def mcp_status() -> int:
        return httpx2.post(
            f"{live_site}/mcp",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"},
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        ).status_code

    assert mcp_status() == 200
    application = AccessToken.objects.get(user=alice).application
    root = superuser()
    client = signed_in(root)
    page = client.get(f"/admin/oauth2_provider/application/{application.pk}/change/").content.decode()
    assert "Last used" in page and "music21:read music21:write" in page  # its token is listed, not its value
    client.post("/admin/auth/user/", {"action": "revoke_tokens", "_selected_action": [alice.pk]})
    assert mcp_status() == 401
