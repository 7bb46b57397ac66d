"""Inspectors are assigned to lines: they see, claim and decide only those lines' captures;
supervisors and admins see every line and edit the assignments (audited)."""

import importlib

import pytest
from django.apps import apps
from django.test import Client
from rest_framework.test import APIClient

from core.models import LineSettingsChange
from inspection.models import Decision, DecisionStatus
from tests.factories import DecisionFactory, ProductionLineFactory, UserFactory, station_with_token

pytestmark = pytest.mark.django_db


def as_user(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def lines():
    return ProductionLineFactory(code="L1"), ProductionLineFactory(code="L2")


def pending_on(line) -> Decision:
    return DecisionFactory(capture__station=station_with_token(line=line))


def test_a_supervisor_assigns_inspectors_and_the_change_is_audited(lines):
    l1, _ = lines
    ines = UserFactory(username="ines", roles=["inspector"])
    ivan = UserFactory(username="ivan", roles=["inspector"])
    supervisor = as_user(UserFactory(username="sam", roles=["supervisor"]))

    response = supervisor.patch("/api/v1/lines/L1", {"inspectors": ["ivan", "ines"]}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["inspectors"] == ["ines", "ivan"]
    assert set(l1.inspectors.all()) == {ines, ivan}
    change = LineSettingsChange.objects.get()
    assert change.changes == {"inspectors": {"old": [], "new": ["ines", "ivan"]}}
    assert change.changed_by.username == "sam"

    # The list is the whole assignment: leaving ivan out unassigns him.
    supervisor.patch("/api/v1/lines/L1", {"inspectors": ["ines"]}, format="json")
    assert list(l1.inspectors.all()) == [ines]
    # The same list again changes nothing and audits nothing.
    supervisor.patch("/api/v1/lines/L1", {"inspectors": ["ines"]}, format="json")
    assert LineSettingsChange.objects.count() == 2


@pytest.mark.parametrize(
    ("names", "code"),
    [(["ines", "nobody"], "unknown_user"), (["ines", "lara"], "not_inspector")],
)
def test_assigning_someone_who_is_not_an_inspector_is_refused_and_changes_nothing(
    lines, names, code
):
    l1, _ = lines
    UserFactory(username="ines", roles=["inspector"])
    UserFactory(username="lara", roles=["labeler"])
    supervisor = as_user(UserFactory(roles=["supervisor"]))
    response = supervisor.patch(
        "/api/v1/lines/L1", {"inspectors": names, "audit_percent": 50}, format="json"
    )
    assert (response.status_code, response.json()["error"]["code"]) == (400, code)
    assert "nobody" in response.json()["error"]["message"] or "lara" in str(response.json())
    l1.refresh_from_db()
    assert (l1.inspectors.count(), l1.audit_percent) == (0, 0.0)
    assert not LineSettingsChange.objects.exists()


def test_an_inspector_cannot_touch_another_lines_captures(lines):
    l1, l2 = lines
    decision = pending_on(l1)
    outsider = as_user(UserFactory(roles=["inspector"], lines=[l2]))
    base = f"/api/v1/captures/{decision.capture_id}"
    for method, path, body in [
        ("get", "", None),
        ("get", "/image", None),
        ("get", "/heatmap.png", None),
        ("post", "/claim", None),
        ("post", "/verdict", {"verdict": "fail"}),
        ("post", "/release", None),
        ("post", "/undo", None),
    ]:
        response = getattr(outsider, method)(base + path, body, format="json")
        assert response.status_code == 404, (path, response.content)
    decision.refresh_from_db()
    assert (decision.status, decision.claimed_by_id, decision.verdict) == (
        DecisionStatus.PENDING,
        None,
        "",
    )
    # The line's own inspector decides it.
    insider = as_user(UserFactory(roles=["inspector"], lines=[l1]))
    assert insider.post(base + "/verdict", {"verdict": "fail"}, format="json").status_code == 200


def test_lists_and_queues_hold_only_the_inspectors_lines(lines):
    l1, l2 = lines
    on_l1, on_l2 = pending_on(l1), pending_on(l2)
    both = as_user(UserFactory(roles=["inspector"], lines=[l1, l2]))
    only_l2 = as_user(UserFactory(roles=["inspector"], lines=[l2]))
    supervisor = as_user(UserFactory(roles=["supervisor"]))

    def ids(client, query=""):
        return {row["id"] for row in client.get(f"/api/v1/captures{query}").json()["results"]}

    everything = {str(on_l1.capture_id), str(on_l2.capture_id)}
    assert ids(both) == ids(supervisor) == everything
    assert ids(only_l2) == {str(on_l2.capture_id)}
    assert ids(only_l2, "?line=L1") == set()
    queue = only_l2.get("/api/v1/queue", {"lines": "L2"}).json()
    assert [item["id"] for item in queue["items"]] == [str(on_l2.capture_id)]
    refused = only_l2.get("/api/v1/queue", {"lines": "L1"})
    assert refused.status_code == 403
    assert "not assigned" in refused.json()["error"]["message"]
    assert [line["code"] for line in only_l2.get("/api/v1/lines").json()] == ["L2"]


def test_pages_show_an_inspector_only_their_lines(lines):
    l1, l2 = lines
    ines = UserFactory(username="ines", roles=["inspector"], lines=[l2])
    UserFactory(username="ivan", roles=["inspector"], lines=[l1, l2])
    browser = Client()
    browser.force_login(ines)
    home = browser.get("/").content.decode()
    assert "/inspect/L2/" in home and "/inspect/L1/" not in home
    assert browser.get("/inspect/L2/").status_code == 200
    assert browser.get("/inspect/L1/").status_code == 403
    assert browser.get("/inspect/L1,L2/").status_code == 403

    nobody = UserFactory(roles=["inspector"])
    browser.force_login(nobody)
    assert "No lines are assigned to you yet" in browser.get("/").content.decode()

    browser.force_login(UserFactory(roles=["supervisor"]))
    page = browser.get("/supervise/").content.decode()
    assert '<option value="ines" >ines</option>' in page.replace("  ", " ") or "ines" in page
    assert page.count('value="ivan" selected') == 2  # ivan on both lines
    assert page.count('value="ines" selected') == 1


def test_upgrading_keeps_every_existing_inspector_on_every_line(lines):
    """Before assignments existed every inspector saw every line: the migration keeps that."""
    migration = importlib.import_module("core.migrations.0002_line_inspectors")
    ines = UserFactory(roles=["inspector"])
    UserFactory(roles=["labeler"])
    migration.assign_existing_inspectors(apps, None)
    for line in lines:
        assert list(line.inspectors.all()) == [ines]
