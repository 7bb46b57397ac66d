"""PostgreSQL: requests racing on one idempotency key give one capture; the rows go in as one
statement outside any transaction here, as in production."""

import io
import threading

import pytest
from django.db import connection
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


@pytest.fixture
def station(postgres, fake_models, monkeypatch):
    """A station on a line with a model, whose captures wait for each other in the model: both
    have their verdict before either inserts."""
    line = ProductionLineFactory(code="L1")
    DeploymentFactory(line=line)
    both_predicting = threading.Barrier(2, timeout=10)
    original = serving.predict

    def predict(**kwargs):
        both_predicting.wait()
        return original(**kwargs)

    monkeypatch.setattr(serving, "predict", predict)
    return station_with_token(line=line)


def post_at_once(station, seeds: list[int], key: str) -> list:
    """Post one image per seed under one key, each from its own thread, at the same time."""
    responses = []

    def post(seed):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {station.token}")
        image = io.BytesIO(image_bytes(seed=seed))
        image.name = "p.jpg"
        responses.append(
            client.post(
                "/api/v1/captures",
                {"image": image, "line": "L1", "idempotency_key": key},
                format="multipart",
            )
        )
        connection.close()

    threads = [threading.Thread(target=post, args=(seed,)) for seed in seeds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


def test_concurrent_posts_with_one_key_make_one_capture(station):
    responses = post_at_once(station, [0, 0], key="retry")
    assert sorted(r.status_code for r in responses) == [200, 201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert Capture.objects.count() == 1 and Decision.objects.count() == 1


def test_racing_posts_of_two_images_under_one_key_keep_only_the_first(station, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    responses = post_at_once(station, [1, 2], key="reused")
    assert sorted(r.status_code for r in responses) == [201, 409]
    capture = Capture.objects.get()
    # Both files were written before the rows; the loser's is gone, the winner's stays.
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.jpg")] == [capture.image]
