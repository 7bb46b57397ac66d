"""Image retention per line: old images leave the store, the rows stay, and what something still
needs is kept."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from core import blobs
from core.models import LineSettingsChange
from inspection import services
from inspection.models import Capture
from labeling.models import DatasetItem, DatasetVersion, LabelTask
from tests.factories import (
    CaptureFactory,
    DecisionFactory,
    PredictionFactory,
    ProductionLineFactory,
    UserFactory,
    image_bytes,
    station_with_token,
)

pytestmark = pytest.mark.django_db


def stored_capture(line, *, days_old: float, seed: int, status: str = "decided", data=None):
    data = data or image_bytes(64, 48, seed=seed)
    name, sha256 = blobs.blob_write(data, folder="captures", extension="jpg")
    capture = CaptureFactory(
        station=station_with_token(line=line),
        image=name,
        image_sha256=sha256,
        image_bytes=len(data),
        received_at=timezone.now() - timedelta(days=days_old),
    )
    if status == "decided":
        DecisionFactory(capture=capture, status=status, verdict="pass", decided_by="model")
    else:
        DecisionFactory(capture=capture)
    return capture


def test_old_images_leave_the_store_and_what_is_still_needed_stays():
    line = ProductionLineFactory(code="L1", image_retention_days=30)
    forever = ProductionLineFactory(code="L2")  # no retention: kept for ever
    old = stored_capture(line, days_old=40, seed=1)
    young = stored_capture(line, days_old=10, seed=2)
    pending = stored_capture(line, days_old=40, seed=3, status="pending")
    labelled = stored_capture(line, days_old=40, seed=4)
    LabelTask.objects.create(capture=labelled, line=line, source="override", image=labelled.image)
    in_dataset = stored_capture(line, days_old=40, seed=5)
    version = DatasetVersion.objects.create(name="v1", content_hash="x" * 64)
    DatasetItem.objects.create(
        dataset_version=version, image=in_dataset.image, label="ok", split="train", group="g"
    )
    shared_bytes = image_bytes(64, 48, seed=6)
    shared_old = stored_capture(line, days_old=40, seed=6, data=shared_bytes)
    stored_capture(forever, days_old=400, seed=6, data=shared_bytes)  # the same file, kept
    ancient_elsewhere = stored_capture(forever, days_old=400, seed=7)
    heatmap_model = PredictionFactory(capture=old).model_version
    heatmap = (
        f"heatmaps/{heatmap_model.sha256[:2]}/{heatmap_model.sha256[:16]}-{old.image_sha256}.png"
    )
    blobs.blob_write_at(heatmap, b"png")

    report = services.retention_apply()

    assert not blobs.blob_exists(old.image) and not blobs.blob_exists(heatmap)
    for kept in (young, pending, labelled, in_dataset, shared_old, ancient_elsewhere):
        assert blobs.blob_exists(kept.image), kept
    result = report.lines["L1"]
    assert (result.deleted_images, result.heatmaps_deleted) == (1, 1)
    assert result.freed_bytes == old.image_bytes
    assert result.kept_in_use == 3  # pending, in a label task, in a dataset
    assert list(report.lines) == ["L1"]
    # Rows stay; the capture says when its image went.
    assert Capture.objects.count() == 8
    old.refresh_from_db()
    shared_old.refresh_from_db()
    assert old.image_deleted_at is not None and shared_old.image_deleted_at is not None
    # A second run frees nothing.
    assert services.retention_apply().freed_bytes == 0


def test_a_deleted_image_answers_410_with_the_reason():
    line = ProductionLineFactory(code="L1", image_retention_days=7)
    old = stored_capture(line, days_old=8, seed=1)
    services.retention_apply()
    inspector = APIClient()
    inspector.force_authenticate(UserFactory(roles=["inspector"], lines=[line]))
    response = inspector.get(f"/api/v1/captures/{old.pk}/image")
    assert (response.status_code, response.json()["error"]["code"]) == (410, "image_deleted")
    assert "retention" in response.json()["error"]["message"]
    assert inspector.get(f"/api/v1/captures/{old.pk}").json()["verdict"] == "pass"


def test_the_retention_is_a_line_setting_audited_and_checked():
    line = ProductionLineFactory(code="L1")
    supervisor = APIClient()
    supervisor.force_authenticate(UserFactory(roles=["supervisor"]))
    response = supervisor.patch("/api/v1/lines/L1", {"image_retention_days": 90}, format="json")
    assert response.json()["image_retention_days"] == 90
    assert LineSettingsChange.objects.get().changes == {
        "image_retention_days": {"old": None, "new": 90}
    }
    for bad in (0, -1, 100000):
        refused = supervisor.patch("/api/v1/lines/L1", {"image_retention_days": bad}, format="json")
        assert refused.status_code == 400
    forever = supervisor.patch("/api/v1/lines/L1", {"image_retention_days": None}, format="json")
    assert forever.json()["image_retention_days"] is None
    line.refresh_from_db()
    assert line.image_retention_days is None


def test_the_command_reports_what_it_freed():
    line = ProductionLineFactory(code="L1", image_retention_days=1)
    old = stored_capture(line, days_old=2, seed=1)
    out = StringIO()
    call_command("retention_apply", "--json", stdout=out)
    body = json.loads(out.getvalue())
    assert body["freed_bytes"] == old.image_bytes
    assert body["lines"]["L1"]["deleted_images"] == 1
