"""A dataset import on object storage: the uploaded archive, the images and masks land in the
bucket, the worker reads the archive back from there, and nothing is written under MEDIA_ROOT."""

from pathlib import Path

import pytest
from django.conf import settings as django_settings

from labeling.models import DatasetImport, DatasetVersion
from labeling.services.imports import dataset_import_execute
from tests.integration.test_object_storage import BUCKET, s3, s3_server  # noqa: F401 (fixtures)
from tests.labeling.test_dataset_imports import client_for, tiles_zip, upload

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_an_import_runs_from_the_bucket(s3):  # noqa: F811
    client = client_for("labeler")
    response = upload(client, tiles_zip(phones=False))
    assert response.status_code == 202, response.content
    # What the worker does with the message (integration tests run no eager Celery).
    dataset_import_execute(import_id=response.json()["id"])
    job = client.get(f"/api/v1/datasets/imports/{response.json()['id']}").json()
    assert job["status"] == "done", job
    version = DatasetVersion.objects.get(pk=job["dataset_version"])
    keys = {item["Key"] for item in s3["client"].list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    archive = DatasetImport.objects.get(pk=job["id"]).archive
    assert f"media/{archive}" in keys
    for item in version.items.all():
        assert f"media/{item.image}" in keys and f"media/{item.mask}" in keys
    media = Path(django_settings.MEDIA_ROOT)
    assert not media.exists() or not any(p.is_file() for p in media.rglob("*"))
    # The cached copy of the archive was dropped once read.
    cache = Path(django_settings.BLOB_CACHE_ROOT) / "media" / archive
    assert not cache.exists()
