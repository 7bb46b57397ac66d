"""A real Celery worker (subprocess) on Redis runs the shadow model on a stored capture."""

import time
import uuid

import pytest

from inspection.models import Prediction
from inspection.tasks import capture_predict_offline
from models_registry import services as registry_services
from tests.factories import ProductionLineFactory, station_with_token
from tests.integration.conftest import child_env, start, stop

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_worker_records_the_shadow_prediction(
    postgres, redis_url, model_artifact, fake_models, tmp_path, django_capture_on_commit_callbacks
):
    from rest_framework.test import APIClient

    from config.celery import app
    from tests.factories import DeploymentFactory, image_bytes

    line = ProductionLineFactory(code="L1", automation_level="partial")
    DeploymentFactory(line=line, role="production")  # fake: answers in the request
    shadow_version = registry_services.model_version_register(path=model_artifact)
    registry_services.deployment_set(line=line, model_version=shadow_version, role="shadow")
    station = station_with_token(line=line)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {station.token}")
    import io

    image = io.BytesIO(image_bytes())
    image.name = "p.jpg"
    # Keep the request's own on-commit send out of the shared queue: this test sends the task
    # itself, to a queue of its own (other test runs may share this Redis).
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(
            "/api/v1/captures",
            {"image": image, "line": "L1", "idempotency_key": "k"},
            format="multipart",
        )
    assert response.status_code == 201
    capture_id = response.json()["id"]
    assert not Prediction.objects.filter(role="shadow").exists()

    queue = f"test-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"
    worker = start(
        ["celery", "-A", "config", "worker", "-Q", queue, "--pool", "solo", "--concurrency", "1",
         "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        child_env(REDIS_URL=redis_url),
        log,
    )  # fmt: skip
    try:
        assert app.conf.broker_url.startswith("redis://")
        capture_predict_offline.apply_async(args=[capture_id, "shadow"], queue=queue)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            prediction = Prediction.objects.filter(capture_id=capture_id, role="shadow").first()
            if prediction:
                break
            if worker.poll() is not None:
                pytest.fail(f"worker exited:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        else:
            pytest.fail(f"no shadow prediction after 90 s:\n{log.read_text()[-3000:]}")
        assert prediction.model_version == shadow_version
        assert 0 <= prediction.score <= 1
        # Idempotent: running it again changes nothing.
        capture_predict_offline.apply_async(args=[capture_id, "shadow"], queue=queue)
        time.sleep(2)
        assert Prediction.objects.filter(capture_id=capture_id, role="shadow").count() == 1
    finally:
        stop(worker)
