"""The monitoring API and pages: the same report as the command, read-only for inspectors,
actions and rules for supervisors (audited), clear refusals."""

import json

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from labeling.models import LabelTask
from monitoring import services
from monitoring.models import MonitoringAction, MonitoringRulesChange, Reference, SignalEvaluation
from tests.factories import UserFactory
from tests.monitoring.conftest import reference_metadata

pytestmark = pytest.mark.django_db


def client(role: str) -> APIClient:
    api = APIClient()
    api.force_authenticate(UserFactory(roles=[role]))
    return api


@pytest.fixture
def line_with_data(simulated_line):
    sim = simulated_line(metadata=reference_metadata())
    sim.captures(300)
    return sim


def test_the_api_gives_the_report_the_command_prints(line_with_data, capsys):
    call_command("monitoring_check", "--line", "L1", "--json")
    printed = json.loads(capsys.readouterr().out)["lines"]["L1"]
    body = client("inspector").get("/api/v1/monitoring/lines/L1").json()
    assert set(body["signals"]) == {"data_drift", "prediction_drift", "concept_drift", "yield"}
    assert {n: s["status"] for n, s in body["signals"].items()} == {
        n: s["status"] for n, s in printed["signals"].items()
    }
    assert body["evaluated_at"] == printed["evaluated_at"]  # the stored evaluation, not a new one


def test_reading_the_report_writes_nothing(line_with_data):
    body = client("supervisor").get("/api/v1/monitoring/lines/L1").json()
    assert body["reference"]["kind"] == "training_data"
    assert SignalEvaluation.objects.count() == 0 and Reference.objects.count() == 0


def test_inspectors_read_but_cannot_act_or_change_rules(line_with_data):
    inspector = client("inspector")
    assert inspector.get("/api/v1/monitoring/alerts").status_code == 200
    history = inspector.get("/api/v1/monitoring/lines/L1/history", {"signal": "data_drift"})
    assert history.status_code == 200
    for path in ("reference", "label-tasks", "retrain", "lower-level"):
        response = inspector.post(f"/api/v1/monitoring/lines/L1/{path}", {}, format="json")
        assert response.status_code == 403, path
    assert (
        inspector.patch("/api/v1/monitoring/lines/L1/rules", {"open_after": 5}).status_code == 403
    )
    assert client("labeler").get("/api/v1/monitoring/lines/L1").status_code == 403
    assert APIClient().get("/api/v1/monitoring/lines/L1").status_code in (401, 403)


def test_unknown_line_and_bad_filters_are_clear_4xx(line_with_data):
    supervisor = client("supervisor")
    response = supervisor.get("/api/v1/monitoring/lines/NOPE")
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_line"
    response = supervisor.get("/api/v1/monitoring/lines/L1/history", {"signal": "weather"})
    assert response.status_code == 400


def test_rules_changes_are_validated_and_audited(line_with_data):
    supervisor = client("supervisor")
    response = supervisor.patch(
        "/api/v1/monitoring/lines/L1/rules",
        {"open_after": 4, "webhook_url": "http://127.0.0.1:9/hook", "webhook_secret": "s3cret"},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["webhook_secret"] == "(set)"
    change = MonitoringRulesChange.objects.get()
    assert change.changes["open_after"] == {"old": 2, "new": 4}
    assert change.changes["webhook_secret"] == {"old": "", "new": "(set)"}  # never in clear
    bad = supervisor.patch("/api/v1/monitoring/lines/L1/rules", {"open_after": 0}, format="json")
    assert bad.status_code == 400 and "open_after" in bad.json()["error"]["message"]
    bad = supervisor.patch(
        "/api/v1/monitoring/lines/L1/rules", {"email_recipients": ["not-an-address"]}, format="json"
    )
    assert bad.status_code == 400
    assert MonitoringRulesChange.objects.count() == 1


def test_pinning_a_reference_and_labelling_the_window_are_audited(line_with_data):
    supervisor = client("supervisor")
    response = supervisor.post(
        "/api/v1/monitoring/lines/L1/reference", {"last": 100}, format="json"
    )
    assert response.status_code == 201, response.content
    assert Reference.objects.get(is_active=True).kind == "pinned"
    report = services.line_check(line=line_with_data.line)
    assert report["reference"]["kind"] == "pinned" and report["reference"]["count"] == 100
    response = supervisor.post(
        "/api/v1/monitoring/lines/L1/label-tasks", {"last": 100, "limit": 10}, format="json"
    )
    assert response.status_code == 201
    assert LabelTask.objects.filter(source="drift").count() == 10
    too_few = supervisor.post("/api/v1/monitoring/lines/L1/reference", {"last": 5}, format="json")
    assert too_few.status_code == 400
    kinds = set(MonitoringAction.objects.values_list("kind", flat=True))
    assert kinds == {"pin_reference", "label_window"}


def test_lowering_the_level_goes_one_step_down_and_is_audited(line_with_data):
    supervisor = client("supervisor")
    response = supervisor.post("/api/v1/monitoring/lines/L1/lower-level", {}, format="json")
    assert response.json()["automation_level"] == "shadow"
    line = line_with_data.line
    line.refresh_from_db()
    assert line.changes.get().changes["automation_level"] == {"old": "assisted", "new": "shadow"}
    supervisor.post("/api/v1/monitoring/lines/L1/lower-level", {}, format="json")
    response = supervisor.post("/api/v1/monitoring/lines/L1/lower-level", {}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "already_manual"


def test_the_pages_render_for_inspectors_and_hide_actions(line_with_data, client):
    services.line_check(line=line_with_data.line)
    client.force_login(UserFactory(roles=["inspector"]))
    page = client.get("/monitor/L1/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Data drift" in html and "<svg" in html and 'data-role="actions"' not in html
    assert client.get("/monitor/").status_code == 200
    client.force_login(UserFactory(roles=["supervisor"]))
    assert 'data-role="actions"' in client.get("/monitor/L1/").content.decode()
    client.force_login(UserFactory(roles=["labeler"]))
    assert client.get("/monitor/L1/").status_code == 403


def test_the_schema_documents_the_monitoring_api(client):
    schema = client.get("/api/schema/?format=json").json()
    assert "/api/v1/monitoring/lines/{code}" in schema["paths"]
    assert "/api/v1/monitoring/alerts" in schema["paths"]
