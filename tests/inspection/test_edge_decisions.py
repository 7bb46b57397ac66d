"""Edge decisions: verdicts a station's edge model gave while the server could not be reached,
uploaded with the buffered captures (POST /api/v1/captures, field `edge_decision`). The server
records them as made at the edge, does not decide them again, sends a share of them to the
inspectors' audit queue, and counts them in the line's figures."""

import io
import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from core.models import LineSettingsChange
from inspection import policy, selectors, services
from inspection.models import Capture, Decision, Prediction
from labeling.models import LabelTask
from monitoring import selectors as monitoring_selectors
from tests.factories import (
    DeploymentFactory,
    ModelVersionFactory,
    ProductionLineFactory,
    UserFactory,
    image_bytes,
    station_with_token,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def line():
    # Nothing audited unless a test says so: the audit share has tests of its own.
    return ProductionLineFactory(code="L1", automation_level="partial", edge_audit_percent=0)


@pytest.fixture
def station(line):
    return station_with_token(line=line, name="S1")


@pytest.fixture
def deployment(line, fake_models):
    return DeploymentFactory(line=line, role="production")


@pytest.fixture
def edge_model():
    """The version the station ran: an older one, no longer deployed on the line."""
    return ModelVersionFactory(name="scratchnet", version=3)


def client_for(station) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {station.token}")
    return client


def edge_decision(version, **changes) -> dict:
    decided_at = timezone.now() - timedelta(minutes=40)
    return {
        "verdict": "fail",
        "score": 0.91,
        "model_version": version.pk,
        "model_sha256": version.sha256,
        "decided_at": decided_at.isoformat(),
        **changes,
    }


def post(station, *, key="k-1", edge=None, seed=0, raw_edge=None):
    image = io.BytesIO(image_bytes(seed=seed))
    image.name = "phone.jpg"
    payload = {"image": image, "line": "L1", "idempotency_key": key}
    if edge is not None:
        payload["edge_decision"] = json.dumps(edge)
    if raw_edge is not None:
        payload["edge_decision"] = raw_edge
    return client_for(station).post("/api/v1/captures", payload, format="multipart")


def test_an_edge_verdict_stands_and_is_recorded_as_made_at_the_edge(
    station, deployment, edge_model, fake_models
):
    # The server's model would pass this phone; the station's edge model failed it, and the
    # phone went to rework: the server records what happened, it does not decide again.
    fake_models.set_score(deployment.model_version, 0.05)
    sent = edge_decision(edge_model, verdict="fail", score=0.91)
    response = post(station, edge=sent)
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["status"], body["verdict"], body["decided_by"], body["reason"]) == (
        "decided",
        "fail",
        "edge",
        "edge",
    )
    assert body["edge"] == {
        "verdict": "fail",
        "score": 0.91,
        "model_version": edge_model.pk,
        "model_label": "scratchnet v3",
        "model_sha256": edge_model.sha256,
        "decided_at": body["edge"]["decided_at"],
    }
    assert body["decided_at"] == body["edge"]["decided_at"]  # when the phone got its verdict
    assert body["audit"] is False and body["model"] is None
    # The production model still read the phone, for the record (figures compare the two).
    reading = Prediction.objects.get(capture_id=body["id"])
    assert (reading.role, reading.score, reading.model_version) == (
        "production",
        0.05,
        deployment.model_version,
    )
    decision = Decision.objects.get(capture_id=body["id"])
    assert decision.acting_prediction is None  # no server model acted on it
    # Read again later (the station's long poll, the inspectors' lists): the same.
    again = client_for(station).get(f"/api/v1/captures/{body['id']}").json()
    assert again["edge"] == body["edge"] and again["decided_by"] == "edge"
    # The answer is written out field by field: what the serializer (the schema) gives.
    from inspection.apis.serializers import CaptureOutputSerializer, capture_output

    capture = selectors.capture_get(capture_id=body["id"])
    assert capture_output(capture) == CaptureOutputSerializer(capture).data == body == again


def test_an_edge_verdict_within_the_clock_skew_and_without_score_or_sha_is_accepted(
    station, edge_model
):
    # No model on the line (nothing to read it with): recorded all the same.
    ahead = (timezone.now() + timedelta(minutes=2)).isoformat()  # the station's clock is fast
    sent = {"verdict": "pass", "model_version": edge_model.pk, "decided_at": ahead}
    response = post(station, edge=sent)
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["verdict"], body["decided_by"]) == ("pass", "edge")
    assert (body["edge"]["score"], body["edge"]["model_sha256"]) == (None, "")
    assert not Prediction.objects.exists()


def test_a_capture_without_an_edge_decision_is_decided_as_before(station, deployment, fake_models):
    fake_models.set_score(deployment.model_version, 0.05)
    body = post(station).json()
    assert (body["verdict"], body["decided_by"], body["reason"], body["edge"]) == (
        "pass",
        "model",
        "confident",
        None,
    )


def test_the_sha256_of_the_versions_onnx_export_is_accepted(station, edge_model):
    edge_model.edge_export = {"status": "ready", "sha256": "ab" * 32}
    edge_model.save()
    response = post(station, edge=edge_decision(edge_model, model_sha256="ab" * 32))
    assert response.status_code == 201, response.content


def _bad_edge_decisions():
    return [
        ("not json", "{verdict: fail", "invalid_edge_decision", "JSON object"),
        ("a list", "[1, 2]", "invalid_edge_decision", "JSON object"),
        ("verdict", {"verdict": "maybe"}, "invalid_edge_decision", "verdict"),
        ("no version", {"model_version": None}, "invalid_edge_decision", "model_version"),
        ("bad time", {"decided_at": "yesterday"}, "invalid_edge_decision", "decided_at"),
        ("NaN score", '{"verdict": "fail", "score": NaN}', "invalid_edge_decision", "JSON"),
        ("huge score", '{"verdict": "fail", "score": 1e999}', "invalid_edge_decision", "score"),
        ("bad sha", {"model_sha256": "xyz"}, "invalid_edge_decision", "model_sha256"),
        ("other sha", {"model_sha256": "0" * 64}, "invalid_edge_decision", "X-Model-Sha256"),
        ("unknown version", {"model_version": 987654}, "unknown_model_version", "987654"),
        ("future", "future", "invalid_edge_decision", "station's clock"),
        ("too big", "x" * 5000, "invalid_edge_decision", "bytes"),
    ]


@pytest.mark.parametrize(
    ("case", "edge", "code", "words"),
    _bad_edge_decisions(),
    ids=[case[0] for case in _bad_edge_decisions()],
)
def test_a_bad_edge_decision_is_a_clear_400_that_stores_nothing(
    station, edge_model, case, edge, code, words
):
    if edge == "future":
        edge = {"decided_at": (timezone.now() + timedelta(hours=1)).isoformat()}
    if isinstance(edge, dict):
        edge = json.dumps(edge_decision(edge_model, **edge))
    response = post(station, raw_edge=edge)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert words in error["message"]
    assert not Capture.objects.exists() and not Decision.objects.exists()


def test_a_retried_upload_with_the_same_edge_decision_is_the_same_capture(station, edge_model):
    sent = edge_decision(edge_model)
    first = post(station, edge=sent)
    again = post(station, edge=sent)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert Capture.objects.count() == 1


def test_the_same_key_with_another_edge_decision_is_a_conflict(station, edge_model):
    sent = edge_decision(edge_model, verdict="fail")
    assert post(station, edge=sent).status_code == 201
    for other in (
        {**sent, "verdict": "pass"},
        {**sent, "decided_at": (timezone.now() - timedelta(minutes=5)).isoformat()},
    ):
        response = post(station, edge=other)
        assert response.status_code == 409, response.content
        assert response.json()["error"]["code"] == "idempotency_conflict"
        assert "edge decision" in response.json()["error"]["message"]
    without = post(station)  # the same key, sent as if the edge had not decided
    assert without.status_code == 409
    assert Capture.objects.count() == 1
    assert Decision.objects.get().verdict == "fail"


def test_a_capture_the_server_had_before_the_edge_decided_keeps_its_first_answer(
    station, deployment, edge_model, fake_models
):
    # The server took the capture and decided it, but the answer was lost on the way back:
    # the station decided at the edge and sends it again with its key. The first answer
    # stands (the station reports the difference to the line lead as a correction).
    fake_models.set_score(deployment.model_version, 0.05)
    first = post(station)
    assert first.json()["decided_by"] == "model"
    again = post(station, edge=edge_decision(edge_model, verdict="fail"))
    assert again.status_code == 200, again.content
    assert (again.json()["id"], again.json()["verdict"], again.json()["decided_by"]) == (
        first.json()["id"],
        "pass",
        "model",
    )
    assert Capture.objects.count() == 1


def test_edge_decisions_go_to_the_audit_queue_by_default(edge_model):
    line = ProductionLineFactory(code="L1", automation_level="manual")
    assert line.edge_audit_percent == 100  # every edge verdict is reviewed unless lowered
    station = station_with_token(line=line, name="S1")
    ines = UserFactory(username="ines", roles=["inspector"], lines=[line])
    body = post(station, edge=edge_decision(edge_model, verdict="pass")).json()
    assert (body["decided_by"], body["audit"], body["audit_status"]) == ("edge", True, "pending")
    queued = selectors.inspector_queue(line_codes=["L1"], user=ines, now=timezone.now())
    assert [str(capture.id) for capture in queued] == [body["id"]]
    assert LabelTask.objects.get(capture_id=body["id"]).source == "audit"

    # The inspector disagrees: the station gets a correction; the edge's verdict stays on
    # record; undoing puts the edge verdict back in force, at the station's time.
    services.capture_claim(capture=body["id"], user=ines)
    services.verdict_record(capture_id=body["id"], user=ines, verdict="fail")
    reviewed = client_for(station).get(f"/api/v1/captures/{body['id']}").json()
    assert (reviewed["verdict"], reviewed["decided_by"], reviewed["audit_status"]) == (
        "fail",
        "human",
        "overridden",
    )
    assert reviewed["edge"]["verdict"] == "pass"
    services.verdict_undo(capture=body["id"], user=ines)
    undone = client_for(station).get(f"/api/v1/captures/{body['id']}").json()
    assert (undone["verdict"], undone["decided_by"], undone["audit_status"]) == (
        "pass",
        "edge",
        "pending",
    )
    assert undone["decided_at"] == body["decided_at"]


def test_a_share_of_edge_decisions_is_audited_as_the_line_says(edge_model):
    line = ProductionLineFactory(code="L1", automation_level="partial", edge_audit_percent=30)
    station = station_with_token(line=line, name="S1")
    audited = {}
    for n in range(30):
        body = post(station, key=f"k-{n}", seed=n, edge=edge_decision(edge_model)).json()
        audited[body["id"]] = body["audit"]
    # Each capture lands the same way every time (a hash of its id), about 30% of them.
    assert audited == {i: policy.edge_audit_selected(i, 30) for i in audited}
    assert 0 < sum(audited.values()) < 30
    assert Decision.objects.filter(audit_status="pending").count() == sum(audited.values())


def test_edge_decisions_count_in_the_lines_figures(station, line, deployment, edge_model):
    post(station, key="by-model")  # the fake model's 0.1: a confident pass
    post(station, key="by-edge", seed=1, edge=edge_decision(edge_model, verdict="fail"))
    now = timezone.now()
    assert selectors.line_decided_by(line=line, since=now - timedelta(days=1)) == {
        "model": 1,
        "human": 0,
        "edge": 1,
    }
    page = Client()
    page.force_login(UserFactory(roles=["supervisor"]))
    html = page.get("/supervise/").content.decode()
    assert "model 1 · human 0 · edge 1" in html
    # Monitoring's yield counts the edge's verdict like any other.
    hours = monitoring_selectors.hourly_yield(line=line, now=now, hours=1)
    assert hours[-1]["total"] == 2 and hours[-1]["defects"] == 1


def test_a_supervisor_sets_the_edge_audit_share_audited_and_shown(line):
    supervisor = UserFactory(roles=["supervisor"])
    api = APIClient()
    api.force_authenticate(supervisor)
    response = api.patch("/api/v1/lines/L1", {"edge_audit_percent": 25}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["edge_audit_percent"] == 25
    change = LineSettingsChange.objects.get(line=line)
    assert change.changes == {"edge_audit_percent": {"old": 0.0, "new": 25.0}}
    refused = api.patch("/api/v1/lines/L1", {"edge_audit_percent": 101}, format="json")
    assert refused.status_code == 400
    assert "edge_audit_percent" in refused.json()["error"]["message"]
    page = Client()
    page.force_login(supervisor)
    html = page.get("/supervise/").content.decode()
    assert 'name="edge_audit_percent"' in html and 'value="25.0"' in html


def test_the_schema_documents_the_edge_decision():
    api = APIClient()
    api.force_authenticate(UserFactory(roles=["supervisor"]))
    schema = api.get("/api/schema/?format=json").json()
    post_op = schema["paths"]["/api/v1/captures"]["post"]
    form = post_op["requestBody"]["content"]["multipart/form-data"]["schema"]
    form = schema["components"]["schemas"][form["$ref"].rsplit("/", 1)[1]]
    assert "edge_decision" in form["properties"]
    assert "edge_decision" not in form.get("required", [])
    assert "edge model" in form["properties"]["edge_decision"]["description"]
    output = schema["components"]["schemas"]["CaptureOutput"]["properties"]
    assert "edge" in output
    assert "edge_audit_percent" in schema["components"]["schemas"]["LineOutput"]["properties"]
