"""The labeling API and pages: the flow a labeler and a reviewer go through, and permissions."""

import pytest
from django.test import Client
from rest_framework.test import APIClient

from labeling.models import DatasetVersion, LabelTask
from tests.factories import ProductionLineFactory, UserFactory
from tests.labeling.conftest import capture_with_image

pytestmark = pytest.mark.django_db


def as_user(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_label_review_and_freeze_through_the_api():
    line = ProductionLineFactory(code="L1")
    capture = capture_with_image(line=line)
    LabelTask.objects.create(
        capture=capture, line=line, source="override", image=capture.image, width=64, height=48
    )
    labeler = as_user(UserFactory(roles=["labeler"]))
    reviewer = as_user(UserFactory(roles=["supervisor"]))
    assert [t["source"] for t in labeler.get("/api/v1/label-tasks").json()] == ["override"]
    annotation = labeler.post("/api/v1/label-tasks/next", {}, format="json").json()
    assert labeler.get(annotation["task"]["image_url"]).status_code == 200
    polygon = {"shape": "polygon", "points": [[1, 1], [30, 2], [15, 40]], "defect_type": "crack"}
    saved = labeler.put(
        f"/api/v1/annotations/{annotation['id']}",
        {"label": "defect", "regions": [polygon], "revision": annotation["revision"]},
        format="json",
    )
    assert saved.status_code == 200 and saved.json()["revision"] == 1
    stale = labeler.put(
        f"/api/v1/annotations/{annotation['id']}", {"label": "ok", "revision": 0}, format="json"
    )
    assert (stale.status_code, stale.json()["error"]["code"]) == (409, "stale_revision")
    bad = labeler.put(
        f"/api/v1/annotations/{annotation['id']}",
        {"regions": [{"shape": "polygon", "points": [[1, 1]]}]},
        format="json",
    )
    assert bad.status_code == 400
    assert labeler.post(f"/api/v1/annotations/{annotation['id']}/submit").status_code == 200
    assert labeler.post("/api/v1/label-tasks/next", {}, format="json").status_code == 204
    assert labeler.get("/api/v1/reviews").status_code == 403
    [waiting] = reviewer.get("/api/v1/reviews").json()
    assert waiting["regions"][0]["shape"] == "polygon"
    assert reviewer.post(f"/api/v1/annotations/{waiting['id']}/send-back", {}).status_code == 400
    accepted = reviewer.post(f"/api/v1/annotations/{waiting['id']}/accept", {"note": "good"})
    assert accepted.json()["status"] == "accepted"
    assert labeler.post("/api/v1/datasets", {"name": "x"}, format="json").status_code == 403
    created = reviewer.post("/api/v1/datasets", {"name": "v1", "line": "L1"}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["counts"]["label"] == {"defect": 1}
    coco = reviewer.get(f"/api/v1/datasets/{created.json()['id']}/coco").json()
    assert coco["annotations"][0]["segmentation"]
    stats = labeler.get("/api/v1/labelers/stats").json()
    assert stats[0]["submitted"] == 1 and stats[0]["accepted"] == 1
    assert DatasetVersion.objects.count() == 1


def test_pages_by_role():
    labeler, inspector = Client(), Client()
    labeler.force_login(UserFactory(roles=["labeler"]))
    inspector.force_login(UserFactory(roles=["inspector"]))
    assert labeler.get("/label/").status_code == 200
    assert labeler.get("/label/datasets/").status_code == 200
    assert labeler.get("/label/review/").status_code == 403
    assert inspector.get("/label/").status_code == 403


def test_schema_lists_the_labeling_endpoints():
    client = APIClient()
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").content.decode()
    for path in (
        "/api/v1/label-tasks/next",
        "/api/v1/annotations/{annotation_id}/accept",
        "/api/v1/datasets",
    ):
        assert path in schema


def test_two_labelers_label_blind_until_both_submitted():
    """Neither labeler of a two-labeler task reads the other's work, by id or in the task."""
    line = ProductionLineFactory(code="L1")
    capture = capture_with_image(line=line)
    LabelTask.objects.create(
        capture=capture,
        line=line,
        source="override",
        image=capture.image,
        width=64,
        height=48,
        required_annotations=2,
    )
    first, second = as_user(UserFactory(roles=["labeler"])), as_user(UserFactory(roles=["labeler"]))
    mine = first.post("/api/v1/label-tasks/next", {}, format="json").json()
    box = {"shape": "box", "box": [2, 2, 30, 30], "defect_type": "scratch"}
    saved = first.put(
        f"/api/v1/annotations/{mine['id']}", {"label": "defect", "regions": [box]}, format="json"
    )
    assert saved.status_code == 200, saved.content
    theirs = second.post("/api/v1/label-tasks/next", {}, format="json").json()
    assert theirs["task"]["id"] == mine["task"]["id"] and theirs["regions"] == []
    assert "defect" not in str(theirs["task"])  # the task shows nothing of the first's work
    # Reading the other's draft by its id: as if it did not exist, also after one submitted.
    assert second.get(f"/api/v1/annotations/{mine['id']}").status_code == 404
    assert first.post(f"/api/v1/annotations/{mine['id']}/submit", format="json").status_code == 200
    assert second.get(f"/api/v1/annotations/{mine['id']}").status_code == 404
    assert first.get(f"/api/v1/annotations/{theirs['id']}").status_code == 404
    assert first.get(f"/api/v1/annotations/{mine['id']}").json()["regions"] == [box]
    # A reviewer reads both.
    reviewer = as_user(UserFactory(roles=["supervisor"]))
    assert reviewer.get(f"/api/v1/annotations/{mine['id']}").json()["label"] == "defect"
