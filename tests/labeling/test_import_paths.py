"""Imports read only files inside their own folder: `../`, absolute paths and links out of the
folder are refused file by file, with a message saying so; the good files are imported."""

import csv
import hashlib
import json
import os

import pytest

from labeling.services import dataset_version_from_coco, dataset_version_from_manifest
from labeling.services.annotations import task_import
from tests.factories import image_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def layout(tmp_path):
    """set/ holds the import; secret/ beside it holds images the import must never read."""
    (tmp_path / "set" / "images").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    for index in range(3):
        (tmp_path / "set" / "images" / f"good{index}.png").write_bytes(
            image_bytes(40, 30, fmt="PNG", seed=index)
        )
    secret = image_bytes(40, 30, fmt="PNG", seed=99)
    (tmp_path / "secret" / "outside.png").write_bytes(secret)
    return tmp_path, hashlib.sha256(secret).hexdigest()


def stored_hashes(version) -> set[str]:
    return set(version.items.values_list("image_sha256", flat=True))


def write_manifest(path, rows):
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["file", "label", "defect_type", "mask_file"])
        writer.writerows(rows)


def test_manifest_rows_outside_the_folder_are_refused_one_by_one(layout):
    root, secret_sha = layout
    outside = root / "secret" / "outside.png"
    write_manifest(
        root / "set" / "manifest.csv",
        [
            ["images/good0.png", "ok", "", ""],
            ["images/good1.png", "defect", "scratch", ""],
            ["../secret/outside.png", "ok", "", ""],
            [str(outside), "ok", "", ""],
            ["images/../../secret/outside.png", "ok", "", ""],
            ["images/good2.png", "defect", "scratch", "../secret/outside.png"],
            ["../secret/not-there.png", "ok", "", ""],
        ],
    )
    version = dataset_version_from_manifest(
        name="paths", manifest_path=root / "set" / "manifest.csv", created_by=None
    )
    assert version.counts["total"] == 2
    assert secret_sha not in stored_hashes(version)
    errors = version.import_errors
    assert len(errors) == 5, errors
    assert all("outside the folder" in error for error in errors)
    assert any(error.startswith("line 4:") for error in errors)
    # Whether a file outside exists is not told: a missing one gets the same answer.
    assert not any("not found" in error for error in errors)


def test_a_link_out_of_an_imported_folder_is_refused(layout):
    root, secret_sha = layout
    ok = root / "set" / "ok"
    ok.mkdir()
    (ok / "fine.png").write_bytes(image_bytes(40, 30, fmt="PNG", seed=5))
    os.symlink(root / "secret" / "outside.png", ok / "link.png")
    version = dataset_version_from_manifest(
        name="folder", manifest_path=root / "set", created_by=None
    )
    assert version.counts["total"] == 1 + 3  # fine.png and images/ (a defect type folder)
    assert secret_sha not in stored_hashes(version)
    assert any("link.png" in e and "outside the folder" in e for e in version.import_errors)

    tasks, errors = task_import(path=root / "set")
    assert len(tasks) == 4
    assert any("outside the folder" in error for error in errors)


def test_coco_file_names_outside_the_images_folder_are_refused(layout):
    root, secret_sha = layout
    names = [
        "images/good0.png",
        "../secret/outside.png",
        str(root / "secret" / "outside.png"),
        "images/../../secret/outside.png",
        "C:\\secret\\outside.png",
    ]
    document = {
        "images": [{"id": i + 1, "file_name": name} for i, name in enumerate(names)]
        + [{"id": 99, "file_name": 12}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}],
        "categories": [{"id": 1, "name": "scratch"}],
    }
    (root / "set" / "coco.json").write_text(json.dumps(document))
    version = dataset_version_from_coco(
        name="coco", coco_path=root / "set" / "coco.json", created_by=None
    )
    assert version.counts["total"] == 1
    assert secret_sha not in stored_hashes(version)
    outside = [e for e in version.import_errors if "outside the folder" in e]
    assert len(outside) == 4, version.import_errors
    assert any("file_name" in e for e in version.import_errors)  # the number, not a name
