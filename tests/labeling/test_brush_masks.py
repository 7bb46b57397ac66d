"""Brush regions (`"shape": "mask"`): saved through the annotation API as compressed RLE of their
box, refused with a clear 400 when malformed, frozen into dataset versions as mask files that
training reads, and exported to COCO as RLE that pycocotools rasterises to the painted pixels."""

import json

import numpy as np
import pytest
from rest_framework.test import APIClient

from labeling.masks import counts_to_string, mask_region_from_mask, mask_rle, rle_mask
from labeling.models import Annotation, LabelTask
from labeling.selectors import dataset_version_items
from labeling.services import dataset_version_coco, dataset_version_create
from tests.factories import UserFactory
from tests.labeling.conftest import accept, capture_with_image, decided_task

pytestmark = pytest.mark.django_db

WIDTH, HEIGHT = 64, 48


def scratch_pixels() -> np.ndarray:
    """A thin diagonal scratch, 2 px wide, as a painter would leave it."""
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    for x in range(8, 56):
        y = 6 + (x - 8) * 30 // 48
        mask[y : y + 2, x] = True
    return mask


def brush_region(mask: np.ndarray, *, compressed: bool = True, defect_type="scratch") -> dict:
    """The region the page sends: the whole image as its box (the server shrinks it)."""
    rle = mask_rle(mask)
    if compressed:
        rle["counts"] = counts_to_string(rle["counts"])
    return {"shape": "mask", "box": [0, 0, WIDTH, HEIGHT], "mask": rle, "defect_type": defect_type}


def paste(region: dict) -> np.ndarray:
    full = np.zeros((HEIGHT, WIDTH), dtype=bool)
    x0, y0, x1, y1 = region["box"]
    full[y0:y1, x0:x1] = rle_mask(region["mask"])
    return full


@pytest.fixture
def labeler_annotation():
    capture = capture_with_image(width=WIDTH, height=HEIGHT)
    LabelTask.objects.create(
        capture=capture, source="override", image=capture.image, width=WIDTH, height=HEIGHT
    )
    client = APIClient()
    client.force_authenticate(UserFactory(roles=["labeler"]))
    annotation = client.post("/api/v1/label-tasks/next", {}, format="json").json()
    return client, annotation


def test_a_brush_region_saved_through_the_api_comes_back_with_the_same_pixels(
    labeler_annotation,
):
    client, annotation = labeler_annotation
    painted = scratch_pixels()
    for compressed in (False, True):  # uncompressed counts are accepted, stored compressed
        saved = client.put(
            f"/api/v1/annotations/{annotation['id']}",
            {"label": "defect", "regions": [brush_region(painted, compressed=compressed)]},
            format="json",
        )
        assert saved.status_code == 200, saved.content
    [region] = client.get(f"/api/v1/annotations/{annotation['id']}").json()["regions"]
    assert region["shape"] == "mask" and region["defect_type"] == "scratch"
    assert region["box"] == [8, 6, 56, 37]  # shrunk to the painted pixels
    assert region["mask"]["size"] == [31, 48] and isinstance(region["mask"]["counts"], str)
    assert np.array_equal(paste(region), painted)
    assert len(region["mask"]["counts"]) < 200  # compact: a few runs a column

    submitted = client.post(f"/api/v1/annotations/{annotation['id']}/submit", format="json")
    assert submitted.status_code == 200
    assert submitted.json()["regions"] == [region]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"box": [0, 0, WIDTH + 1, HEIGHT]}, "outside the image"),
        ({"box": [-1, 0, WIDTH, HEIGHT]}, "starts outside the image"),
        ({"box": [0, 0, 10.5, HEIGHT]}, "whole number"),
        ({"box": [0, 0, WIDTH]}, "box is [x0, y0, x1, y1]"),
        ({"mask": {"size": [HEIGHT, WIDTH - 1], "counts": [3, 4]}}, "must be its box's"),
        ({"mask": {"size": [HEIGHT, WIDTH], "counts": [5, 7]}}, "must agree"),
        ({"mask": {"size": [HEIGHT, WIDTH], "counts": [WIDTH * HEIGHT + 2, -2]}}, "negative"),
        ({"mask": {"size": [HEIGHT, WIDTH], "counts": "\u00e9\u00e9"}}, "not compressed RLE"),
        ({"mask": {"size": [HEIGHT, WIDTH], "counts": "o"}}, "middle of a count"),
        ({"mask": {"size": [HEIGHT, WIDTH], "counts": {"a": 1}}}, "list of run lengths"),
        ({"mask": {"size": [HEIGHT, WIDTH], "counts": [WIDTH * HEIGHT]}}, "at least one pixel"),
        ({"mask": {"size": [HEIGHT, WIDTH], "counts": "0" * 400_001}}, "at most 400000"),
        ({"mask": None}, '"mask": {"size"'),
    ],
)
def test_a_malformed_mask_is_a_clear_400_and_nothing_is_stored(
    labeler_annotation, change, fragment
):
    client, annotation = labeler_annotation
    region = {**brush_region(scratch_pixels()), **change}
    response = client.put(
        f"/api/v1/annotations/{annotation['id']}",
        {"label": "defect", "regions": [region]},
        format="json",
    )
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_mask" and fragment in error["message"], error
    stored = Annotation.objects.get(pk=annotation["id"])
    assert stored.revision == 0 and stored.regions == annotation["regions"]


def test_a_frozen_version_carries_brush_masks_as_the_mask_training_reads():
    task = decided_task(seed=4)
    painted = scratch_pixels()
    box = {"shape": "box", "box": [40.0, 40.0, 50.0, 46.0], "defect_type": "scratch"}
    region = mask_region_from_mask(painted, defect_type="crack")
    accept(task, label="defect", regions=[region, region, box])
    version = dataset_version_create(name="brushed", created_by=None)
    [item] = dataset_version_items(dataset_version=version)
    assert item.mask_path is not None and item.mask_path.is_file()
    expected = painted.copy()
    expected[40:46, 40:50] = True
    assert np.array_equal(item.load_mask(), expected)
    assert item.defect_type == "crack"  # two brush regions of cracks, one box of a scratch


def test_the_coco_export_of_brush_regions_rasterises_to_the_painted_pixels(tmp_path):
    from pycocotools.coco import COCO

    painted = scratch_pixels()
    polygon = {
        "shape": "polygon",
        "points": [[40, 30], [60, 30], [50, 45]],
        "box": [40, 30, 60, 45],
        "defect_type": "stain",
    }
    region = mask_region_from_mask(painted, defect_type="scratch")
    accept(decided_task(seed=5), label="defect", regions=[region, polygon])
    version = dataset_version_create(name="coco-brush", created_by=None)
    document = dataset_version_coco(dataset_version=version)
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(document))
    coco = COCO(str(path))
    annotations = coco.loadAnns(coco.getAnnIds())
    brushed = [a for a in annotations if isinstance(a["segmentation"], dict)]
    assert len(annotations) == 2 and len(brushed) == 1  # the item's mask is its regions
    [annotation] = brushed
    assert annotation["iscrowd"] == 0  # one defect: evaluation counts it
    assert coco.loadCats(annotation["category_id"])[0]["name"] == "scratch"
    assert np.array_equal(coco.annToMask(annotation).astype(bool), painted)
    assert annotation["area"] == int(painted.sum())
    assert annotation["bbox"] == [8.0, 6.0, 48.0, 31.0]


def test_a_coco_file_with_brush_regions_reads_back_as_brush_regions(tmp_path, media_root):
    from labeling.services import dataset_version_from_coco

    region = mask_region_from_mask(scratch_pixels(), defect_type="scratch")
    accept(decided_task(seed=6), label="defect", regions=[region])
    original = dataset_version_create(name="orig", created_by=None)
    (tmp_path / "coco.json").write_text(json.dumps(dataset_version_coco(dataset_version=original)))
    copy = dataset_version_from_coco(
        name="copy", coco_path=tmp_path / "coco.json", images_root=media_root, created_by=None
    )
    assert copy.import_errors == []
    [item] = copy.items.all()
    assert item.regions == [region]
    [frozen] = dataset_version_items(dataset_version=copy)
    assert np.array_equal(frozen.load_mask(), scratch_pixels())
