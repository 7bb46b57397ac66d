"""PostgreSQL: requests racing on one idempotency key give one capture; the rows go in as one
statement outside any transaction here, as in production."""

import io
import threading

import pytest
from rest_framework.test import APIClient

from inspection.models import Capture, Decision
from models_registry import serving
from tests.factories import (
    DeploymentFactory,
    ProductionLineFactory,
    image_bytes,
    station_with_token,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_concurrent_posts_with_one_key_make_one_capture(postgres, fake_models, monkeypatch):
    line = ProductionLineFactory(code="L1")
    DeploymentFactory(line=line)
    station = station_with_token(line=line)
    # Both requests have their verdict before either inserts.
    both_predicting = threading.Barrier(2, timeout=10)
    original = serving.predict

    def predict(**kwargs):
        both_predicting.wait()
        return original(**kwargs)

    monkeypatch.setattr(serving, "predict", predict)
    responses = []

    def post():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {station.token}")
        image = io.BytesIO(image_bytes())
        image.name = "p.jpg"
        responses.append(
            client.post(
                "/api/v1/captures",
                {"image": image, "line": "L1", "idempotency_key": "retry"},
                format="multipart",
            )
        )
        from django.db import connection

        connection.close()

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status_code for r in responses) == [200, 201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert Capture.objects.count() == 1 and Decision.objects.count() == 1


def test_racing_posts_of_two_images_under_one_key_keep_only_the_first(
    postgres, fake_models, monkeypatch, settings, tmp_path
):
    settings.MEDIA_ROOT = str(tmp_path)
    line = ProductionLineFactory(code="L1")
    DeploymentFactory(line=line)
    station = station_with_token(line=line)
    both_predicting = threading.Barrier(2, timeout=10)
    original = serving.predict

    def predict(**kwargs):
        both_predicting.wait()
        return original(**kwargs)

    monkeypatch.setattr(serving, "predict", predict)
    responses = {}

    def post(seed):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {station.token}")
        image = io.BytesIO(image_bytes(seed=seed))
        image.name = "p.jpg"
        responses[seed] = client.post(
            "/api/v1/captures",
            {"image": image, "line": "L1", "idempotency_key": "reused"},
            format="multipart",
        )
        from django.db import connection

        connection.close()

    threads = [threading.Thread(target=post, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status_code for r in responses.values()) == [201, 409]
    capture = Capture.objects.get()
    # Both files were written before the rows; the loser's is gone, the winner's stays.
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.jpg")] == [capture.image]
