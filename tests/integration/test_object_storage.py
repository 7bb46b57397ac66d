"""Object storage: with STORAGES on S3 (django-storages with boto3, the production code path)
against a real S3-protocol server on loopback (moto in server mode, started here), captures,
heatmaps, imported datasets and model artifacts live in the bucket, not on the local disk; the
web side reads them back from there; a process serving a model fetches the artifact once into its
cache, checked by sha256; and a store that is down answers 503 with nothing stored."""

import hashlib
import os
import shutil
from pathlib import Path

import boto3
import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from core import blobs
from inspection.models import Capture
from labeling.selectors import dataset_version_items
from labeling.services import dataset_version_from_manifest
from models_registry import services as registry_services
from models_registry import serving
from tests.factories import (
    ProductionLineFactory,
    UserFactory,
    image_bytes,
    station_with_token,
)
from tests.integration.conftest import free_port, start, stop, wait_for_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

BUCKET = "inspection-test"


@pytest.fixture
def s3_server(tmp_path):
    port = free_port()
    log = tmp_path / "moto.log"
    command = ["moto.server", "-H", "127.0.0.1", "-p", str(port)]
    process = start(command, env=dict(os.environ), log=log)
    wait_for_port(port, process, log, timeout=30)
    yield {"url": f"http://127.0.0.1:{port}", "process": process}
    stop(process)


@pytest.fixture
def s3(settings, s3_server):
    """The platform's STORAGES on the bucket, as config/settings.py sets them from the env."""
    settings.AWS_STORAGE_BUCKET_NAME = BUCKET
    settings.AWS_S3_ENDPOINT_URL = s3_server["url"]
    settings.AWS_S3_REGION_NAME = "us-east-1"
    settings.AWS_ACCESS_KEY_ID = "testing"
    settings.AWS_SECRET_ACCESS_KEY = "testing"
    settings.AWS_S3_FILE_OVERWRITE = True
    settings.AWS_DEFAULT_ACL = None
    settings.AWS_QUERYSTRING_AUTH = False
    from botocore.config import Config

    settings.AWS_S3_CLIENT_CONFIG = Config(
        signature_version="s3v4",
        connect_timeout=1,
        read_timeout=5,
        retries={"max_attempts": 2, "mode": "standard"},
    )
    client = boto3.client(
        "s3",
        endpoint_url=s3_server["url"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=BUCKET)
    settings.STORAGES = {
        **django_settings.STORAGES,
        "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {"location": "media"}},
        "models": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {"location": "models"}},
    }
    serving.clear()
    yield {"client": client, **s3_server}
    serving.clear()


def keys(s3, prefix: str = "") -> list[str]:
    listed = s3["client"].list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def local_files(root) -> list[Path]:
    root = Path(root)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_blobs_are_content_addressed_objects_in_the_bucket(s3, settings):
    data = b"phone image bytes" * 100
    name, sha = blobs.blob_write(data, folder="captures", extension="jpg")
    assert blobs.blob_write(data, folder="captures", extension="jpg") == (name, sha)
    assert keys(s3) == [f"media/{name}"]
    assert blobs.blob_exists(name) and not blobs.blob_exists("captures/none.jpg")
    assert blobs.blob_read(name) == data
    with pytest.raises(FileNotFoundError):
        blobs.blob_read("captures/none.jpg")
    # Code that needs a file on disk gets a cached copy, fetched once, checked by its sha256.
    cached = blobs.blob_local_path(name, sha256=sha)
    assert cached.read_bytes() == data and str(cached).startswith(str(settings.BLOB_CACHE_ROOT))
    cached.write_bytes(b"corrupted")
    assert blobs.blob_local_path(name, sha256=sha).read_bytes() == data  # fetched again
    with pytest.raises(ValueError, match="do not match"):
        blobs.blob_local_path(name, sha256="0" * 64)
    assert local_files(settings.MEDIA_ROOT) == []


def test_a_capture_is_stored_in_the_bucket_and_read_back_by_an_inspector(s3, settings, fake_models):
    line = ProductionLineFactory(code="L1", automation_level="assisted")
    station = station_with_token(line=line)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {station.token}")
    image = image_bytes(seed=3)
    response = client.post(
        "/api/v1/captures",
        {"image": _upload(image), "line": "L1", "idempotency_key": "k1"},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    capture = Capture.objects.get()
    assert keys(s3, "media/captures/") == [f"media/{capture.image}"]
    assert local_files(settings.MEDIA_ROOT) == []

    inspector = APIClient()
    inspector.force_authenticate(UserFactory(roles=["inspector"], lines=[line]))
    served = inspector.get(f"/api/v1/captures/{capture.pk}/image")
    assert served.status_code == 200
    assert b"".join(served.streaming_content) == image


def test_an_artifact_lives_in_the_bucket_and_each_server_fetches_and_checks_it(
    s3, settings, model_artifact
):
    version = registry_services.model_version_register(path=model_artifact, name="tiny")
    assert keys(s3, "models/") == [f"models/{version.artifact}"]
    assert local_files(settings.MODELS_ROOT) == []
    stored = s3["client"].get_object(Bucket=BUCKET, Key=f"models/{version.artifact}")
    assert hashlib.sha256(stored["Body"].read()).hexdigest() == version.sha256

    from vision.images import decode_image

    image = decode_image(image_bytes(128, 96, seed=1))
    output = serving.predict(sha256=version.sha256, artifact=version.artifact, image=image)
    assert 0.0 <= output.score <= 1.0
    [cached] = local_files(Path(settings.BLOB_CACHE_ROOT) / blobs.MODELS)
    # A damaged cached copy (a disk error, a half copy) is fetched again, never served.
    cached.write_bytes(b"garbage")
    serving.clear()
    again = serving.predict(sha256=version.sha256, artifact=version.artifact, image=image)
    assert again.score == pytest.approx(output.score)
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == version.sha256


def test_an_imported_dataset_is_read_from_the_bucket_for_training(s3, settings, tmp_path):
    folder = tmp_path / "set"
    (folder / "images").mkdir(parents=True)
    rows = ["file,label,defect_type,mask_file"]
    for index in range(3):
        (folder / "images" / f"p{index}.png").write_bytes(
            image_bytes(48, 32, fmt="PNG", seed=index)
        )
        rows.append(f"images/p{index}.png," + ("defect,scratch," if index % 2 else "ok,,"))
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    version = dataset_version_from_manifest(
        name="s3-set", manifest_path=folder / "manifest.csv", created_by=None
    )
    assert len(keys(s3, "media/datasets/")) == 3
    assert local_files(settings.MEDIA_ROOT) == []
    items = dataset_version_items(dataset_version=version)
    originals = {(folder / "images" / f"p{i}.png").read_bytes() for i in range(3)}
    assert {Path(item.path).read_bytes() for item in items} == originals


def test_a_store_that_is_down_answers_503_and_stores_nothing(s3, settings, fake_models):
    line = ProductionLineFactory(code="L1", automation_level="assisted")
    station = station_with_token(line=line)
    stop(s3["process"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {station.token}")
    response = client.post(
        "/api/v1/captures",
        {"image": _upload(image_bytes(seed=5)), "line": "L1", "idempotency_key": "k2"},
        format="multipart",
    )
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "storage_unavailable"
    assert int(response["Retry-After"]) > 0
    assert not Capture.objects.exists()
    shutil.rmtree(settings.BLOB_CACHE_ROOT, ignore_errors=True)


def _upload(data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("phone.jpg", data, content_type="image/jpeg")
