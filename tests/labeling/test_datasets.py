import csv
import hashlib

import pytest

from core.errors import ApplicationError
from labeling.models import DatasetVersion, FrozenError
from labeling.selectors import dataset_version_items, reviewed_annotations_since
from labeling.services import dataset_version_create, dataset_version_from_manifest
from tests.factories import ProductionLineFactory, UserFactory, image_bytes
from tests.labeling.conftest import accept, decided_task

pytestmark = pytest.mark.django_db

POLYGON = {
    "shape": "polygon",
    "points": [[5, 5], [30, 8], [20, 30]],
    "box": [5, 5, 30, 30],
    "defect_type": "crack",
}


def reviewed_set(count, line=None):
    tasks = []
    for index in range(count):
        task = decided_task(seed=index, line=line)
        defect = index % 2 == 0
        accept(
            task,
            label="defect" if defect else "ok",
            regions=[{"shape": "box", "box": [1, 2, 10, 12], "defect_type": "scratch"}]
            if defect
            else [],
        )
        tasks.append(task)
    return tasks


def test_a_version_freezes_reviewed_labels_with_counts_hash_and_items():
    line = ProductionLineFactory(code="L9")
    reviewed_set(12, line=line)
    decided_task(seed=99, line=line)  # not reviewed: left out
    version = dataset_version_create(name="v1", created_by=UserFactory())
    assert version.counts["total"] == 12
    assert version.counts["label"] == {"defect": 6, "ok": 6}
    assert version.counts["line"] == {"L9": 12}
    assert sum(version.counts["split"].values()) == 12
    assert len(version.content_hash) == 64
    items = dataset_version_items(dataset_version=version)
    assert len(items) == 12 and all(item.path.is_file() for item in items)
    defect = next(item for item in items if item.label == "defect")
    assert defect.boxes == ((1, 2, 10, 12),) and defect.defect_type == "scratch"
    assert defect.load_mask().sum() == 9 * 10
    by_split = {
        s: dataset_version_items(dataset_version=version, split=s) for s in version.counts["split"]
    }
    assert sum(len(v) for v in by_split.values()) == 12
    groups = [{item.group for item in v} for v in by_split.values()]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])


def test_a_version_never_changes():
    reviewed_set(3)
    version = dataset_version_create(name="frozen", created_by=None)
    version.name = "renamed"
    with pytest.raises(FrozenError):
        version.save()
    with pytest.raises(FrozenError):
        version.items.first().save()
    reviewed_set(1)
    assert DatasetVersion.objects.get(pk=version.pk).counts["total"] == 3


def test_same_labels_same_hash_and_split_stable_when_items_are_added():
    tasks = reviewed_set(10)
    first = dataset_version_create(name="a", created_by=None)
    second = dataset_version_create(name="b", created_by=None)
    assert first.content_hash == second.content_hash
    splits_before = {i.group: i.split for i in first.items.all()}
    for index in range(10, 30):
        accept(decided_task(seed=index), label="ok")
    third = dataset_version_create(name="c", created_by=None)
    assert third.content_hash != first.content_hash
    splits_after = {i.group: i.split for i in third.items.all()}
    moved = [g for g, s in splits_before.items() if splits_after[g] != s]
    assert moved == [], f"{moved} moved split; tasks {len(tasks)}"


def test_polygons_become_a_mask_file():
    task = decided_task(seed=1)
    accept(task, label="defect", regions=[POLYGON])
    version = dataset_version_create(name="poly", created_by=None)
    [item] = dataset_version_items(dataset_version=version)
    assert item.mask_path is not None and item.mask_path.is_file()
    mask = item.load_mask()
    assert mask[15, 18] and not mask[40, 60]
    assert item.defect_type == "crack"


def test_nothing_reviewed_is_refused():
    decided_task(seed=1)
    with pytest.raises(ApplicationError) as error:
        dataset_version_create(name="empty", created_by=None)
    assert error.value.code == "empty_dataset"
    assert not DatasetVersion.objects.exists()


def test_reviewed_annotations_since_counts_per_line():
    line = ProductionLineFactory(code="LA")
    reviewed_set(3, line=line)
    reviewed_set(2)
    assert reviewed_annotations_since() == 5
    assert reviewed_annotations_since(line="LA") == 3
    assert reviewed_annotations_since(line=line) == 3


def write_manifest_folder(root, rows, *, bad_image=False):
    (root / "images").mkdir(parents=True)
    for index, (name, _label, _type) in enumerate(rows):
        (root / "images" / name).write_bytes(image_bytes(40, 30, fmt="PNG", seed=index))
    if bad_image:
        (root / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with (root / "manifest.csv").open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["file", "label", "defect_type", "mask_file"])
        for name, label, defect_type in rows:
            writer.writerow([f"images/{name}", label, defect_type, ""])
        if bad_image:
            writer.writerow(["images/broken.png", "defect", "scratch", ""])
        writer.writerow(["images/missing.png", "ok", "", ""])
        writer.writerow(["images/a0.png", "maybe", "", ""])


def test_manifest_import_copies_good_files_and_reports_bad_ones(tmp_path, media_root):
    rows = [
        (f"a{i}.png", "defect" if i % 2 else "ok", "scratch" if i % 2 else "") for i in range(8)
    ]
    write_manifest_folder(tmp_path / "set", rows, bad_image=True)
    version = dataset_version_from_manifest(
        name="bench", manifest_path=tmp_path / "set" / "manifest.csv", created_by=None
    )
    assert version.counts["total"] == 8
    assert len(version.import_errors) == 4  # line 12 has two problems
    assert any("broken.png" in e for e in version.import_errors)
    assert any("missing.png" in e for e in version.import_errors)
    items = dataset_version_items(dataset_version=version)
    assert all(str(item.path).startswith(str(media_root)) for item in items)
    first = (tmp_path / "set" / "images" / "a0.png").read_bytes()
    assert any(item.path.name.startswith(hashlib.sha256(first).hexdigest()) for item in items)


def test_manifest_without_columns_imports_nothing(tmp_path):
    (tmp_path / "m.csv").write_text("name,verdict\nx.png,ok\n")
    with pytest.raises(ApplicationError) as error:
        dataset_version_from_manifest(name="x", manifest_path=tmp_path / "m.csv", created_by=None)
    assert error.value.code == "bad_manifest"
    assert not DatasetVersion.objects.exists()


def test_coco_export_and_import_give_back_the_same_regions(tmp_path, media_root):
    import json

    from labeling.services import dataset_version_coco, dataset_version_from_coco

    box = {"shape": "box", "box": [1.0, 2.0, 10.5, 12.0], "defect_type": "scratch"}
    accept(decided_task(seed=1), label="defect", regions=[POLYGON, box])
    accept(decided_task(seed=2), label="ok")
    original = dataset_version_create(name="orig", created_by=None)
    document = dataset_version_coco(dataset_version=original)
    assert {c["name"] for c in document["categories"]} >= {"scratch", "crack"}
    assert len(document["annotations"]) == 2
    (tmp_path / "coco.json").write_text(json.dumps(document))
    copy = dataset_version_from_coco(
        name="copy", coco_path=tmp_path / "coco.json", images_root=media_root, created_by=None
    )
    assert copy.import_errors == []

    def contents(version):
        return sorted(
            (i.image_sha256, i.label, i.split, json.dumps(i.regions, sort_keys=True))
            for i in version.items.all()
        )

    assert contents(copy) == contents(original)
    assert copy.content_hash == original.content_hash


def test_coco_import_reports_bad_entries_and_keeps_good_ones(tmp_path):
    from labeling.services import dataset_version_from_coco

    (tmp_path / "good.png").write_bytes(image_bytes(40, 30, fmt="PNG"))
    document = {
        "images": [
            {"id": 1, "file_name": "good.png", "width": 40, "height": 30},
            {"id": 2, "file_name": "gone.png"},
            {"id": 3, "file_name": "bad-region.png"},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
            {"id": 2, "image_id": 3, "category_id": 1, "bbox": [1, 1, 0, 0]},
        ],
        "categories": [{"id": 1, "name": "scratch"}],
    }
    (tmp_path / "c.json").write_text(__import__("json").dumps(document))
    version = dataset_version_from_coco(name="c", coco_path=tmp_path / "c.json", created_by=None)
    assert version.counts["total"] == 1 and version.counts["label"] == {"defect": 1}
    assert len(version.import_errors) == 2
