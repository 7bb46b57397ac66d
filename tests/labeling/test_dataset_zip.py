"""A dataset version exported as a zip (images, one mask PNG per defect image, manifest.csv in the
shared/datasets layout, regions.json) re-imports through POST /api/v1/datasets/imports with
every region and identical masks; and zips of class folders (`ok/`, `scratch/`, ...) import with
the same per-file report and limits as manifests."""

import csv
import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from labeling.masks import mask_region_from_mask
from labeling.models import DatasetVersion
from labeling.selectors import dataset_item_to_item
from labeling.services import dataset_version_create
from tests.factories import image_bytes
from tests.labeling.conftest import accept, decided_task
from tests.labeling.test_dataset_imports import PHONES, client_for, imported, tiles_zip

pytestmark = pytest.mark.django_db


def thin_scratch(width=64, height=48) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    for x in range(5, 60):
        mask[10 + x // 4, x] = True
    return mask


def annotated_version(name="annotated") -> DatasetVersion:
    brush = mask_region_from_mask(thin_scratch(), defect_type="scratch")
    polygon = {
        "shape": "polygon",
        "points": [[30.5, 30], [50, 32], [40, 44]],
        "box": [30.5, 30, 50, 44],
        "defect_type": "crack",
    }
    box = {"shape": "box", "box": [2.0, 2.0, 9.5, 7.0], "defect_type": "stain"}
    accept(decided_task(seed=11), label="defect", regions=[brush, polygon, box])
    accept(decided_task(seed=12), label="defect", regions=[box])  # boxes only: no mask file
    accept(decided_task(seed=13), label="ok")
    return dataset_version_create(name=name, created_by=None)


def download(client, version) -> zipfile.ZipFile:
    response = client.get(f"/api/v1/datasets/{version.pk}/zip")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/zip"
    assert f'filename="{version.name}.zip"' in response["Content-Disposition"]
    return zipfile.ZipFile(io.BytesIO(response.getvalue()))


def effective_masks(version) -> dict:
    """What training sees of each image: its mask (mask file, else its boxes), by sha256."""
    return {row.image_sha256: dataset_item_to_item(row).load_mask() for row in version.items.all()}


def reimported(client, callbacks, archive: zipfile.ZipFile, name: str) -> DatasetVersion:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as copy:
        for info in archive.infolist():
            copy.writestr(info, archive.read(info))
    job = imported(client, callbacks, buffer.getvalue(), name=name)
    assert job["status"] == "done", job
    assert job["errors"] == []
    return DatasetVersion.objects.get(pk=job["dataset_version"])


def test_the_zip_export_re_imports_with_every_region_and_identical_masks(
    django_capture_on_commit_callbacks,
):
    client = client_for("supervisor")
    original = annotated_version()
    archive = download(client_for("labeler"), original)
    names = set(archive.namelist())
    assert {"manifest.csv", "regions.json"} <= names
    rows = list(csv.DictReader(io.TextIOWrapper(archive.open("manifest.csv"), "utf-8")))
    assert list(rows[0])[:4] == ["file", "label", "defect_type", "mask_file"]
    assert len(rows) == 3 and all(row["file"] in names for row in rows)
    for row in rows:  # one mask per defect image, nonzero where the defect is
        if row["label"] == "ok":
            assert row["mask_file"] == ""
            continue
        mask = np.asarray(Image.open(archive.open(row["mask_file"]))) > 0
        assert mask.any() and mask.shape == (48, 64)
    regions = json.loads(archive.read("regions.json"))["images"]
    assert sorted(len(r) for r in regions.values()) == [1, 3]

    copy = reimported(client, django_capture_on_commit_callbacks, archive, "annotated-copy")
    by_sha = {item.image_sha256: item for item in copy.items.all()}
    for item in original.items.all():
        twin = by_sha[item.image_sha256]
        assert (twin.label, twin.defect_type, twin.group, twin.split) == (
            item.label,
            item.defect_type,
            item.group,
            item.split,
        )
        assert twin.regions == item.regions  # boxes, polygons and brush regions, as stored
    masks, copied = effective_masks(original), effective_masks(copy)
    for sha, mask in masks.items():
        assert (mask is None and copied[sha] is None) or np.array_equal(mask, copied[sha]), sha
    brushed = next(i for i in copy.items.all() if any(r["shape"] == "mask" for r in i.regions))
    assert dataset_item_to_item(brushed).load_mask()[thin_scratch()].all()


def test_imported_masks_survive_an_export_and_a_re_import(django_capture_on_commit_callbacks):
    client = client_for("supervisor")
    job = imported(client, django_capture_on_commit_callbacks, tiles_zip())
    tiles = DatasetVersion.objects.get(pk=job["dataset_version"])
    copy = reimported(client, django_capture_on_commit_callbacks, download(client, tiles), "again")
    assert copy.counts["label"] == tiles.counts["label"]
    assert copy.counts["defect_type"] == tiles.counts["defect_type"]
    masks, copied = effective_masks(tiles), effective_masks(copy)
    assert masks.keys() == copied.keys()
    for sha, mask in masks.items():
        assert (mask is None and copied[sha] is None) or np.array_equal(mask, copied[sha]), sha


def test_the_export_needs_a_labeler_and_a_version():
    version = annotated_version()
    assert client_for("inspector").get(f"/api/v1/datasets/{version.pk}/zip").status_code == 403
    missing = client_for("labeler").get("/api/v1/datasets/999999/zip")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    page = client_for("labeler").get("/label/datasets/").content.decode()
    assert f'href="/api/v1/datasets/{version.pk}/zip"' in page


def class_folders_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("parts/ok/a.jpg", image_bytes(40, 30, seed=1))
        bundle.writestr("parts/GOOD/b.png", image_bytes(40, 30, fmt="PNG", seed=2))
        bundle.write(PHONES / "images/Scr_0006.jpg", "parts/Scratch/Scr_0006.jpg")
        bundle.writestr("parts/crack/line 2/d.jpg", image_bytes(40, 30, seed=4))
        bundle.writestr("parts/scratch/notes.txt", b"taken on line 2")
        bundle.writestr("parts/scratch/broken.jpg", b"not a jpeg")
        bundle.writestr("parts/readme.md", b"class folders")
        bundle.writestr("parts/.DS_Store", b"\0")
        bundle.writestr("__MACOSX/parts/ok/._a.jpg", b"\0\5\26\7")
        mask = np.zeros((30, 40), dtype=np.uint8)
        mask[5:9, 3:30] = 255
        png = io.BytesIO()
        Image.fromarray(mask).save(png, format="PNG")
        bundle.writestr("parts/masks/d.png", png.getvalue())
        bundle.writestr("../escape.jpg", image_bytes(40, 30, seed=9))
    return buffer.getvalue()


def test_a_zip_of_class_folders_is_imported_with_a_per_file_report(
    django_capture_on_commit_callbacks, media_root
):
    from pathlib import Path

    job = imported(client_for("labeler"), django_capture_on_commit_callbacks, class_folders_zip())
    assert job["status"] == "done", job
    version = DatasetVersion.objects.get(pk=job["dataset_version"])
    assert version.counts["label"] == {"ok": 2, "defect": 2}
    assert version.counts["defect_type"] == {"scratch": 1, "crack": 1}
    assert job["counts"]["imported"] == 4

    def reason(fragment):
        return next((e for e in job["errors"] if fragment in e), None)

    assert "not an image file (.txt)" in reason("scratch/notes.txt")
    assert "not a readable image" in reason("scratch/broken.jpg")
    assert "not in a class folder" in reason("readme.md")
    assert "outside the archive" in reason("../escape.jpg")
    assert len(job["errors"]) == 4, job["errors"]  # hidden files and __MACOSX/ are not classes
    crack = version.items.get(defect_type="crack")
    assert crack.source_name == "crack/line 2/d.jpg"
    assert (np.asarray(Image.open(Path(media_root) / crack.mask)) > 0).sum() == 4 * 27


def test_class_folder_zips_have_the_same_limits(django_capture_on_commit_callbacks, settings):
    settings.DATASET_IMPORT_MAX_FILES = 3
    job = imported(client_for("labeler"), django_capture_on_commit_callbacks, class_folders_zip())
    assert job["status"] == "failed" and "at most 3" in job["error"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("ok/notes.txt", b"no images here")
    settings.DATASET_IMPORT_MAX_FILES = 100
    empty = imported(client_for("labeler"), django_capture_on_commit_callbacks, buffer.getvalue())
    assert empty["status"] == "failed" and "no images found" in empty["error"]
    assert not DatasetVersion.objects.exists()
