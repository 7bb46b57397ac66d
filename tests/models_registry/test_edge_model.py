"""The edge model: every registered version is exported to ONNX off the request path, checked
against the eager model, and served to the line's stations with an ETag."""

import hashlib

import numpy as np
import pytest
from django.test import Client
from rest_framework.test import APIClient

from models_registry import services as registry_services
from models_registry import serving
from models_registry.models import ModelVersion
from tests.factories import ProductionLineFactory, UserFactory, image_bytes, station_with_token

pytestmark = pytest.mark.django_db


def station_client(station) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {station.token}")
    return client


@pytest.fixture
def line():
    return ProductionLineFactory(code="L1")


def register(path, callbacks) -> ModelVersion:
    with callbacks(execute=True):  # the export is queued on commit (eager Celery in tests)
        version = registry_services.model_version_register(path=path, name="tiny")
    version.refresh_from_db()
    return version


def test_a_station_downloads_its_lines_model_as_onnx_that_scores_like_the_server(
    line, model_artifact, django_capture_on_commit_callbacks
):
    import onnxruntime

    from vision.images import decode_image

    version = register(model_artifact, django_capture_on_commit_callbacks)
    state = version.edge_export
    assert state["status"] == "ready", state
    assert state["max_abs_diff"] <= state["tolerance"] == 1e-4
    # The supervisor sees the figure on the version's page.
    page = Client()
    page.force_login(UserFactory(roles=["supervisor"]))
    text = page.get(f"/models/{version.pk}/").content.decode()
    assert "parity with the eager model" in text and f"{state['max_abs_diff']:.1e}" in text
    registry_services.deployment_set(line=line, model_version=version, role="production")
    station = station_with_token(line=line)

    response = station_client(station).get("/api/v1/lines/L1/model")
    assert response.status_code == 200, response.content
    body = b"".join(response.streaming_content)
    assert hashlib.sha256(body).hexdigest() == response["X-Model-Sha256"] == state["sha256"]
    assert response["ETag"] == f'"{state["sha256"]}"'
    assert response["X-Model-Version"] == str(version.pk)

    # What the station computes with the file is what the server computes.
    image = decode_image(image_bytes(128, 96, seed=4))
    server = serving.predict(sha256=version.sha256, artifact=version.artifact, image=image)
    session = onnxruntime.InferenceSession(body, providers=["CPUExecutionProvider"])
    pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1)[None]
    pixels = pixels[:, :, : pixels.shape[2] // 8 * 8, : pixels.shape[3] // 8 * 8]
    _, score = session.run(None, {"images": np.ascontiguousarray(pixels)})
    assert float(score[0]) == pytest.approx(server.score, abs=1e-3)

    # Unchanged: 304 and no body; the ETag is what the station keeps.
    again = station_client(station).get(
        "/api/v1/lines/L1/model", HTTP_IF_NONE_MATCH=response["ETag"]
    )
    assert again.status_code == 304 and again.content == b""
    assert again["ETag"] == response["ETag"]
    changed = station_client(station).get("/api/v1/lines/L1/model", HTTP_IF_NONE_MATCH='"other"')
    assert changed.status_code == 200


def test_who_may_download_and_what_a_line_without_model_answers(line):
    station = station_with_token(line=line)
    response = station_client(station).get("/api/v1/lines/L1/model")
    assert (response.status_code, response.json()["error"]["code"]) == (404, "no_production_model")
    other = station_with_token(line=ProductionLineFactory(code="L2"))
    assert station_client(other).get("/api/v1/lines/L1/model").status_code == 404
    inspector = APIClient()
    inspector.force_authenticate(UserFactory(roles=["inspector"], lines=[line]))
    assert inspector.get("/api/v1/lines/L1/model").status_code == 403
    assert APIClient().get("/api/v1/lines/L1/model").status_code == 401


def test_a_version_without_export_yet_answers_503_and_gets_one(
    line, model_artifact, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):  # registered, export not run
        version = registry_services.model_version_register(path=model_artifact, name="tiny")
    ModelVersion.objects.filter(pk=version.pk).update(edge_export={})  # as before this existed
    registry_services.deployment_set(line=line, model_version=version, role="production")
    station = station_with_token(line=line)
    with django_capture_on_commit_callbacks(execute=True):
        response = station_client(station).get("/api/v1/lines/L1/model")
    assert (response.status_code, response.json()["error"]["code"]) == (503, "edge_model_pending")
    assert int(response["Retry-After"]) > 0
    version.refresh_from_db()
    assert version.edge_export["status"] == "ready"  # the queued export ran
    assert station_client(station).get("/api/v1/lines/L1/model").status_code == 200


def test_a_failed_export_is_a_clear_404_with_the_reason(
    line, model_artifact, django_capture_on_commit_callbacks, monkeypatch
):
    from vision import export

    def broken(*args, **kwargs):
        raise export.ExportError("onnx export differs from the eager model by 3.0e-02")

    monkeypatch.setattr(export, "export_onnx", broken)
    version = register(model_artifact, django_capture_on_commit_callbacks)
    assert version.edge_export["status"] == "failed"
    registry_services.deployment_set(line=line, model_version=version, role="production")
    response = station_client(station_with_token(line=line)).get("/api/v1/lines/L1/model")
    assert (response.status_code, response.json()["error"]["code"]) == (404, "no_edge_model")
    assert "differs from the eager model" in response.json()["error"]["message"]
