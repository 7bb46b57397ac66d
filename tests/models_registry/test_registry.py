"""Registering artifacts, deploying them, and serving them once per process."""

from pathlib import Path

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from core.errors import ApplicationError
from models_registry import services, serving
from models_registry.models import Deployment, ModelVersion
from tests.factories import ProductionLineFactory, UserFactory, image_bytes, station_with_token

pytestmark = pytest.mark.django_db


def test_register_copies_the_artifact_by_hash_and_is_idempotent(model_artifact, settings):
    version = services.model_version_register(path=model_artifact, name="tiny")
    stored = Path(settings.MODELS_ROOT) / version.artifact
    assert stored.read_bytes() == model_artifact.read_bytes()
    assert version.artifact == f"models/{version.sha256}.pt"
    assert version.metadata["architecture"]
    assert services.model_version_register(path=model_artifact) == version
    assert ModelVersion.objects.count() == 1


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04broken"])
def test_register_refuses_what_is_not_an_artifact(tmp_path, content):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(ApplicationError) as error:
        services.model_version_register(path=path)
    assert error.value.code == "bad_artifact"
    assert not ModelVersion.objects.exists()


def test_register_model_command_deploys(model_artifact, capsys):
    line = ProductionLineFactory(code="L1")
    call_command("register_model", str(model_artifact), "--deploy-to", "L1", "--role", "canary",
                 "--percent", "25")  # fmt: skip
    deployment = Deployment.objects.get(line=line)
    assert (deployment.role, deployment.canary_percent) == ("canary", 25)
    assert "Deployed to L1 as canary" in capsys.readouterr().out


def test_one_model_per_role_per_line(model_artifact):
    line = ProductionLineFactory()
    first = services.model_version_register(path=model_artifact)
    services.deployment_set(line=line, model_version=first, role="production")
    services.deployment_set(line=line, model_version=first, role="production")
    assert Deployment.objects.filter(line=line).count() == 1
    with pytest.raises(ApplicationError):
        services.deployment_set(line=line, model_version=first, role="boss")


def test_serving_loads_once_and_reuses(model_artifact, monkeypatch):
    version = services.model_version_register(path=model_artifact)
    loads = []
    original = serving._load
    monkeypatch.setattr(serving, "_load", lambda *a: loads.append(a) or original(*a))
    first = serving.predictor_for(sha256=version.sha256, artifact=version.artifact)
    again = serving.predictor_for(sha256=version.sha256, artifact=version.artifact)
    assert first is again and len(loads) == 1
    assert first.sha256 == version.sha256


def test_a_replaced_artifact_file_is_refused_and_remembered(model_artifact, settings):
    version = services.model_version_register(path=model_artifact)
    (Path(settings.MODELS_ROOT) / version.artifact).write_bytes(b"tampered")
    with pytest.raises(serving.ServingError):
        serving.predictor_for(sha256=version.sha256, artifact=version.artifact)
    assert version.sha256 in serving.serving_errors()
    assert not serving.warm(sha256=version.sha256, artifact=version.artifact)
    # Supervisors see it on the line.
    line = ProductionLineFactory(code="L1")
    services.deployment_set(line=line, model_version=version, role="production")
    client = APIClient()
    client.force_authenticate(UserFactory(roles=["supervisor"]))
    [deployment] = client.get("/api/v1/lines/L1").json()["deployments"]
    assert "could not be loaded" in deployment["serving_error"]


def test_real_model_through_the_api(model_artifact):
    line = ProductionLineFactory(code="L1", automation_level="assisted")
    version = services.model_version_register(path=model_artifact)
    services.deployment_set(line=line, model_version=version, role="production")
    station = station_with_token(line=line)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {station.token}")
    response = client.post(
        "/api/v1/captures",
        {"image": _upload(image_bytes(320, 180)), "line": "L1", "idempotency_key": "r1"},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "pending" and body["reason"] == "assisted"
    assert 0 <= body["model"]["score"] <= 1
    assert body["model"]["model_version"] == version.pk


def test_deleted_artifact_sends_captures_to_humans(model_artifact, settings):
    line = ProductionLineFactory(code="L1", automation_level="partial")
    version = services.model_version_register(path=model_artifact)
    services.deployment_set(line=line, model_version=version, role="production")
    (Path(settings.MODELS_ROOT) / version.artifact).unlink()
    station = station_with_token(line=line)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {station.token}")
    response = client.post(
        "/api/v1/captures",
        {"image": _upload(image_bytes()), "line": "L1", "idempotency_key": "r1"},
        format="multipart",
    )
    assert response.status_code == 201
    assert (response.json()["status"], response.json()["reason"]) == ("pending", "no_model")


def _upload(data: bytes):
    import io

    stream = io.BytesIO(data)
    stream.name = "phone.jpg"
    return stream


@pytest.mark.django_db(transaction=True)
def test_deployed_models_are_warmed_at_start(model_artifact):
    line = ProductionLineFactory(code="L1")
    version = services.model_version_register(path=model_artifact)
    services.deployment_set(line=line, model_version=version, role="production")
    serving.warm_deployed_in_background().join(timeout=60)
    assert version.sha256 in serving._predictors
