"""The station contract: POST/GET /api/v1/captures (shared/INTERFACES.md)."""

import io
import json
from pathlib import Path

import pytest
from django.conf import settings
from django.db import OperationalError
from PIL import Image
from rest_framework.test import APIClient

from inspection.models import Capture, Decision, Prediction
from inspection.services import captures
from labeling.models import LabelTask
from tests.factories import (
    DeploymentFactory,
    ProductionLineFactory,
    UserFactory,
    image_bytes,
    station_with_token,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def line():
    return ProductionLineFactory(code="L1", automation_level="partial")


@pytest.fixture
def station(line):
    return station_with_token(line=line, name="S1")


@pytest.fixture
def deployment(line, fake_models):
    return DeploymentFactory(line=line, role="production")


def client_for(station) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {station.token}")
    return client


def upload(data: bytes, name: str = "phone.jpg"):
    stream = io.BytesIO(data)
    stream.name = name
    return stream


def post_capture(client, *, data=None, line="L1", key="k-1", **extra):
    payload = {
        "image": upload(image_bytes() if data is None else data),
        "line": line,
        "idempotency_key": key,
        **extra,
    }
    return client.post("/api/v1/captures", payload, format="multipart")


def stored_files() -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def assert_nothing_stored(response, status: int, code: str):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert Capture.objects.count() == 0
    assert Decision.objects.count() == 0
    assert stored_files() == []


def test_confident_pass_is_decided_by_the_model(station, deployment, fake_models):
    fake_models.set_score(deployment.model_version, 0.05)
    response = post_capture(client_for(station), captured_at="2025-01-02T03:04:05Z")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["line"] == "L1"
    assert (body["status"], body["verdict"], body["decided_by"]) == ("decided", "pass", "model")
    assert body["model"]["score"] == pytest.approx(0.05)
    assert body["captured_at"] == "2025-01-02T03:04:05Z"
    capture = Capture.objects.get(pk=body["id"])
    # Content-addressed original bytes.
    stored = Path(settings.MEDIA_ROOT) / capture.image
    assert stored.read_bytes() == image_bytes()
    assert capture.image == f"captures/{capture.image_sha256[:2]}/{capture.image_sha256}.jpg"
    assert (capture.width, capture.height) == (256, 144)
    assert capture.image_stats  # drift statistics
    prediction = Prediction.objects.get(capture=capture)
    assert (prediction.role, prediction.model_version) == ("production", deployment.model_version)


def test_confident_fail_is_decided_by_the_model(station, deployment, fake_models):
    fake_models.set_score(deployment.model_version, 0.95)
    body = post_capture(client_for(station)).json()
    assert (body["status"], body["verdict"], body["decided_by"]) == ("decided", "fail", "model")
    assert body["model"]["regions"][0]["box"] == [1, 2, 30, 40]


def test_uncertain_capture_waits_for_a_human(station, deployment, fake_models):
    fake_models.set_score(deployment.model_version, 0.5)
    body = post_capture(client_for(station)).json()
    assert (body["status"], body["verdict"], body["decided_by"]) == ("pending", None, None)
    assert body["reason"] == "uncertain"
    assert Decision.objects.get(capture_id=body["id"]).model_shown  # as the policy said


def test_manual_line_never_runs_the_model(line, station, deployment, fake_models):
    line.automation_level = "manual"
    line.save()
    body = post_capture(client_for(station)).json()
    assert (body["status"], body["reason"], body["model"]) == ("pending", "manual", None)
    assert fake_models.predictors == {}
    assert Prediction.objects.count() == 0


def test_shadow_line_hides_the_model_output(line, station, deployment, fake_models):
    line.automation_level = "shadow"
    line.save()
    body = post_capture(client_for(station)).json()
    assert (body["status"], body["reason"], body["model"]) == ("pending", "shadow", None)
    assert Prediction.objects.count() == 1  # but agreement can be measured
    decision = Decision.objects.get(capture_id=body["id"])
    assert not decision.model_shown and decision.model_verdict in ("pass", "uncertain", "fail")


def test_png_is_accepted(station, deployment):
    response = post_capture(client_for(station), data=image_bytes(fmt="PNG"))
    assert response.status_code == 201
    assert Capture.objects.get().image.endswith(".png")


def test_metadata_is_kept(station, deployment):
    response = post_capture(client_for(station), metadata=json.dumps({"serial": "X1"}))
    assert response.json()["metadata"] == {"serial": "X1"}


def test_no_model_deployed_goes_to_a_human(station):
    body = post_capture(client_for(station)).json()
    assert (body["status"], body["reason"]) == ("pending", "no_model")


def test_broken_artifact_falls_back_to_a_human_and_says_why(station, deployment, fake_models):
    fake_models.break_model(deployment.model_version)
    for key in ("a", "b"):
        response = post_capture(client_for(station), key=key)
        assert response.status_code == 201
        assert (response.json()["status"], response.json()["reason"]) == ("pending", "no_model")
    decision = Decision.objects.first()
    assert "could not be loaded" in decision.detail
    from models_registry import serving

    assert deployment.model_version.sha256 in serving.serving_errors()


def test_same_idempotency_key_returns_the_first_capture(station, deployment, fake_models):
    client = client_for(station)
    first = post_capture(client, key="same")
    again = post_capture(client, key="same")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert Capture.objects.count() == 1
    assert len(stored_files()) == 1


def test_same_idempotency_key_with_another_image_is_a_conflict(station, deployment, fake_models):
    client = client_for(station)
    first = post_capture(client, key="same")
    other = post_capture(client, key="same", data=image_bytes(seed=5))
    assert other.status_code == 409, other.content
    error = other.json()["error"]
    assert error["code"] == "idempotency_conflict"
    assert "same" in error["message"] and first.json()["id"] in error["message"]
    assert Capture.objects.count() == 1
    assert len(stored_files()) == 1
    assert post_capture(client, key="same").status_code == 200  # the first image still replays


def database_gone(**kwargs):
    raise OperationalError("server closed the connection unexpectedly")


def test_rows_that_fail_to_go_in_leave_no_file(station, deployment, monkeypatch):
    # The image's file is written before the rows: it goes again when they cannot go in.
    monkeypatch.setattr(captures, "capture_rows_insert", database_gone)
    response = post_capture(client_for(station))
    assert response["Retry-After"] == "5"
    assert_nothing_stored(response, 503, "database_unavailable")


def test_a_failed_capture_keeps_the_file_another_capture_names(station, deployment, monkeypatch):
    assert post_capture(client_for(station), key="first").status_code == 201
    monkeypatch.setattr(captures, "capture_rows_insert", database_gone)
    assert post_capture(client_for(station), key="second").status_code == 503
    [stored] = stored_files()  # the same image: the first capture's file stays
    assert Capture.objects.get().image == stored.relative_to(settings.MEDIA_ROOT).as_posix()


def test_same_key_from_another_station_is_another_capture(line, station, deployment):
    other = station_with_token(line=line, name="S2")
    first = post_capture(client_for(station), key="same").json()
    second = post_capture(client_for(other), key="same").json()
    assert first["id"] != second["id"]


def test_same_image_twice_is_stored_once(station, deployment):
    post_capture(client_for(station), key="a")
    post_capture(client_for(station), key="b")
    assert Capture.objects.count() == 2
    assert len(stored_files()) == 1


def test_not_an_image(station, deployment):
    response = post_capture(client_for(station), data=b"hello, I am a text file")
    assert_nothing_stored(response, 415, "not_image")


def test_truncated_image(station, deployment):
    response = post_capture(client_for(station), data=image_bytes()[:600])
    assert_nothing_stored(response, 400, "truncated")


def test_zero_bytes(station, deployment):
    response = post_capture(client_for(station), data=b"")
    assert_nothing_stored(response, 400, "empty")


def test_too_many_bytes(station, deployment, settings):
    settings.CAPTURE_MAX_BYTES = 1000
    response = post_capture(client_for(station))
    assert_nothing_stored(response, 413, "too_large")


def test_decompression_bomb(station, deployment):
    # A tiny PNG that claims 20000 x 20000 pixels.
    buffer = io.BytesIO()
    Image.new("L", (20000, 20000)).save(buffer, format="PNG")
    assert len(buffer.getvalue()) < 1_000_000
    response = post_capture(client_for(station), data=buffer.getvalue())
    assert_nothing_stored(response, 413, "too_large")


def test_other_format_is_unsupported(station, deployment):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, format="GIF")
    response = post_capture(client_for(station), data=buffer.getvalue())
    assert_nothing_stored(response, 415, "not_image")


def test_unknown_line(station, deployment):
    response = post_capture(client_for(station), line="NOPE")
    assert_nothing_stored(response, 404, "unknown_line")


def test_station_posting_to_another_line(station, deployment):
    ProductionLineFactory(code="L2")
    response = post_capture(client_for(station), line="L2")
    assert_nothing_stored(response, 403, "wrong_line")


def test_missing_token():
    ProductionLineFactory(code="L1")
    response = post_capture(APIClient())
    assert_nothing_stored(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"


def test_wrong_token(line):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert_nothing_stored(post_capture(client), 401, "authentication_failed")


def test_disabled_station_is_refused(station):
    station.is_active = False
    station.save()
    assert_nothing_stored(post_capture(client_for(station)), 401, "authentication_failed")


def test_a_logged_in_user_cannot_post_captures(line):
    client = APIClient()
    client.force_authenticate(UserFactory(roles=["inspector"]))
    assert_nothing_stored(post_capture(client), 403, "permission_denied")


@pytest.mark.parametrize("missing", ["image", "line", "idempotency_key"])
def test_missing_fields(station, deployment, missing):
    payload = {"image": upload(image_bytes()), "line": "L1", "idempotency_key": "k"}
    del payload[missing]
    response = client_for(station).post("/api/v1/captures", payload, format="multipart")
    assert_nothing_stored(response, 400, "required")
    assert missing in response.json()["error"]["fields"]


def test_bad_optional_fields(station, deployment):
    response = post_capture(client_for(station), captured_at="yesterday")
    assert_nothing_stored(response, 400, "invalid")
    response = post_capture(client_for(station), metadata="[1, 2]")
    assert_nothing_stored(response, 400, "invalid")
    response = post_capture(client_for(station), key="k" * 65)
    assert_nothing_stored(response, 400, "max_length")


def test_json_body_is_refused_clearly(station):
    response = client_for(station).post("/api/v1/captures", {"line": "L1"}, format="json")
    assert_nothing_stored(response, 415, "unsupported_media_type")


def test_unknown_api_url_is_json_404(station):
    response = client_for(station).get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_get_capture_and_its_permissions(line, station, deployment, fake_models):
    fake_models.set_score(deployment.model_version, 0.5)
    created = post_capture(client_for(station)).json()
    url = f"/api/v1/captures/{created['id']}"
    assert client_for(station).get(url).json() == created
    # A station of another line does not see it.
    other = station_with_token(line=ProductionLineFactory(code="L9"), name="S9")
    assert client_for(other).get(url).status_code == 404
    # Inspectors of the line do, and supervisors; an inspector of another line does not (the
    # image and heatmap neither), nor people without a role.
    inspector = APIClient()
    inspector.force_authenticate(UserFactory(roles=["inspector"], lines=[line]))
    assert inspector.get(url).json()["id"] == created["id"]
    assert inspector.get(url + "/image").status_code == 200
    supervisor = APIClient()
    supervisor.force_authenticate(UserFactory(roles=["supervisor"]))
    assert supervisor.get(url).json()["id"] == created["id"]
    stranger = APIClient()
    stranger.force_authenticate(UserFactory(roles=["inspector"], lines=[other.line]))
    for path in ("", "/image", "/heatmap.png"):
        response = stranger.get(url + path)
        assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")
    assert stranger.get("/api/v1/captures").json()["results"] == []
    nobody = APIClient()
    nobody.force_authenticate(UserFactory())
    assert nobody.get(url).status_code == 403
    assert APIClient().get(url).status_code == 401
    assert client_for(station).get(url + "?wait=abc").status_code == 400
    assert client_for(station).get(url + "?wait=61").status_code == 400


def test_unknown_capture_is_404(station):
    response = client_for(station).get("/api/v1/captures/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_list_filters(line, station, deployment, fake_models):
    client = client_for(station)
    fake_models.set_score(deployment.model_version, 0.05)
    post_capture(client, key="pass", data=image_bytes(seed=1))
    fake_models.set_score(deployment.model_version, 0.95)
    post_capture(client, key="fail", data=image_bytes(seed=2))
    fake_models.set_score(deployment.model_version, 0.5)
    post_capture(client, key="pending", data=image_bytes(seed=3))

    inspector = APIClient()
    inspector.force_authenticate(UserFactory(roles=["inspector"], lines=[line]))

    def keys(query: str) -> list[str]:
        response = inspector.get(f"/api/v1/captures?{query}")
        assert response.status_code == 200, response.content
        return sorted(row["idempotency_key"] for row in response.json()["results"])

    assert keys("line=L1") == ["fail", "pass", "pending"]
    assert keys("status=pending") == ["pending"]
    assert keys("verdict=fail") == ["fail"]
    assert keys("line=L2") == []
    assert keys("received_after=2000-01-01T00:00:00Z&received_before=2000-01-02T00:00:00Z") == []
    assert inspector.get("/api/v1/captures?status=maybe").status_code == 400
    assert len(client.get("/api/v1/captures").json()["results"]) == 3  # the station's own


def test_audit_sample_in_full_creates_a_label_task(line, station, deployment, fake_models):
    line.automation_level = "full"
    line.audit_percent = 100
    line.save()
    body = post_capture(client_for(station)).json()
    assert (body["status"], body["decided_by"], body["audit"]) == ("decided", "model", True)
    assert body["audit_status"] == "pending"  # and so in the inspectors' queue (test_audit)
    assert LabelTask.objects.get().source == "audit"


def test_canary_decides_its_share(line, station, deployment, fake_models):
    canary = DeploymentFactory(line=line, role="canary", canary_percent=100)
    fake_models.set_score(deployment.model_version, 0.05)
    fake_models.set_score(canary.model_version, 0.95)
    body = post_capture(client_for(station)).json()
    assert (body["verdict"], body["model"]["role"]) == ("fail", "canary")
    assert fake_models.predictors[deployment.model_version.sha256].calls == 0


def test_broken_canary_falls_back_to_production(line, station, deployment, fake_models):
    canary = DeploymentFactory(line=line, role="canary", canary_percent=100)
    fake_models.set_score(deployment.model_version, 0.05)
    fake_models.break_model(canary.model_version)
    body = post_capture(client_for(station)).json()
    assert (body["verdict"], body["model"]["role"]) == ("pass", "production")


def test_shadow_model_runs_off_the_request_path(
    line, station, deployment, fake_models, django_capture_on_commit_callbacks
):
    shadow = DeploymentFactory(line=line, role="shadow")
    fake_models.set_score(shadow.model_version, 0.8)
    with django_capture_on_commit_callbacks(execute=True):
        body = post_capture(client_for(station)).json()
    # Eager Celery in unit tests: the task already ran on commit.
    roles = dict(Prediction.objects.filter(capture_id=body["id"]).values_list("role", "score"))
    assert roles == {"production": pytest.approx(0.1), "shadow": pytest.approx(0.8)}
    assert body["model"]["role"] == "production"


def test_the_answer_is_the_output_serializers_for_every_kind_of_capture(line, station, deployment):
    """The answer is written out field by field (capture_output), not through the serializer:
    for a decided capture, an audit sample with the station's clock and metadata, and a pending
    one without the model's output, in turn, it is exactly what the serializer (the API's
    schema) gives, read again or as first sent, and sent as DRF's JSON renderer writes it."""
    from rest_framework.renderers import JSONRenderer

    from inspection.apis.serializers import CaptureOutputSerializer, capture_output
    from inspection.selectors import capture_get

    client = client_for(station)
    decided = post_capture(client, key="decided")
    line.automation_level, line.audit_percent = "full", 100
    line.save()
    metadata = {"serial": "SN-7", "fixture": {"id": "Fü2", "readings": [1, 2.5, None, True]}}
    audited = post_capture(
        client,
        key="audited",
        data=image_bytes(seed=2),
        captured_at="2026-03-02T14:05:09.250+01:00",
        metadata=json.dumps(metadata),
    )
    line.automation_level = "manual"  # then pending, without the model's output
    line.save()
    pending = post_capture(client, key="pending", data=image_bytes(seed=3))
    bodies = [response.json() for response in (decided, audited, pending)]
    assert [(b["status"], b["audit_status"]) for b in bodies] == [
        ("decided", None),
        ("decided", "pending"),
        ("pending", None),
    ]
    assert bodies[0]["model"] is not None and bodies[2]["model"] is None
    assert bodies[1]["captured_at"] == "2026-03-02T13:05:09.250000Z"
    assert bodies[1]["metadata"] == metadata
    for response, body in zip(
        (decided, audited, pending, decided), [*bodies, bodies[0]], strict=True
    ):
        capture = capture_get(capture_id=body["id"])
        assert capture_output(capture) == CaptureOutputSerializer(capture).data == body
        assert response["Content-Type"] == "application/json"
        assert response.content == JSONRenderer().render(CaptureOutputSerializer(capture).data)
