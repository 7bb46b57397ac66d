"""Dataset imports from an uploaded zip (POST /api/v1/datasets/imports, the Celery task, the
`dataset_import` command) built from real files of shared/datasets, and the COCO export of
their pixel masks, read back with pycocotools."""

import csv
import importlib
import io
import json
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from labeling.coco import mask_rle, rle_mask
from labeling.models import DatasetImport, DatasetVersion
from tests.factories import UserFactory, image_bytes
from vision.images import load_mask

pytestmark = pytest.mark.django_db

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/datasets")
TILES = SHARED / "magnetic_tile_defect"
PHONES = SHARED / "msd_phone_screen_subset"
# Small ones (about 100 x 300 px), so the tests stay fast.
TILE_ROWS = [
    ("images/blowhole__exp2_num_40424.jpg", "defect", "blowhole"),
    ("images/uneven__exp1_num_524.jpg", "defect", "uneven"),
    ("images/break__exp1_num_62553.jpg", "defect", "break"),
    ("images/none__exp4_num_3554.jpg", "ok", "none"),
]
PHONE_ROWS = [("images/Oil_0001.jpg", "defect", "oil"), ("images/Scr_0006.jpg", "defect", "")]

importlib.import_module("pycocotools")  # pinned in requirements-dev.txt: a missing one fails
if not TILES.is_dir():  # pragma: no cover
    pytest.fail(f"shared/datasets is missing beside the repository ({TILES})", pytrace=False)


def tile_mask_name(file: str) -> str:
    return "masks/" + Path(file).with_suffix(".png").name


def manifest_text(rows) -> str:
    stream = io.StringIO()
    writer = csv.writer(stream)
    writer.writerow(["file", "label", "defect_type", "mask_file"])
    writer.writerows(rows)
    return stream.getvalue()


def tiles_zip(*, extra_rows=(), extra_files=(), phones=True) -> bytes:
    """A zip in the shared/datasets layout: manifest.csv, images/, masks/."""
    rows, buffer = [], io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for file, label, defect_type in TILE_ROWS:
            bundle.write(TILES / file, f"tiles/{file}")
            bundle.write(TILES / tile_mask_name(file), f"tiles/{tile_mask_name(file)}")
            rows.append([file, label, defect_type, tile_mask_name(file)])
        if phones:
            for file, label, defect_type in PHONE_ROWS:
                bundle.write(PHONES / file, f"tiles/{file}")
                rows.append([file, label, defect_type, ""])
        for name, data in extra_files:
            if isinstance(name, zipfile.ZipInfo):
                bundle.writestr(name, data)
            else:
                bundle.writestr(name, data)
        bundle.writestr("tiles/manifest.csv", manifest_text(rows + list(extra_rows)))
    return buffer.getvalue()


def client_for(*roles) -> APIClient:
    client = APIClient()
    client.force_login(UserFactory(roles=list(roles)))
    return client


def upload(client, data: bytes, name="tiles", filename="tiles.zip", **extra):
    archive = io.BytesIO(data)
    archive.name = filename
    return client.post(
        "/api/v1/datasets/imports", {"archive": archive, "name": name}, format="multipart", **extra
    )


def imported(client, django_capture_on_commit_callbacks, data: bytes, name="tiles") -> dict:
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(client, data, name=name)
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "queued"
    assert response.json()["dataset_version"] is None
    polled = client.get(f"/api/v1/datasets/imports/{response.json()['id']}")
    assert polled.status_code == 200
    return polled.json()


def test_a_zip_of_tiles_and_phones_is_imported_and_bad_files_are_listed(
    django_capture_on_commit_callbacks,
):
    symlink = zipfile.ZipInfo("tiles/images/link.jpg")
    symlink.external_attr = (stat.S_IFLNK | 0o777) << 16
    duplicate = (TILES / TILE_ROWS[0][0]).read_bytes()
    data = tiles_zip(
        extra_rows=[
            ["images/broken.jpg", "defect", "crack", ""],  # not an image
            ["images/copy.jpg", "defect", "blowhole", ""],  # the same bytes as the first tile
            ["images/masked.jpg", "defect", "crack", "masks/not-there.png"],  # its mask is gone
            ["../outside.jpg", "ok", "", ""],  # a row naming a file outside the archive
            ["images/link.jpg", "ok", "", ""],  # a link entry (refused when unpacking)
        ],
        extra_files=[
            ("tiles/images/broken.jpg", b"this is not a jpeg"),
            ("tiles/images/copy.jpg", duplicate),
            ("tiles/images/masked.jpg", image_bytes(40, 30)),
            ("tiles/../outside.jpg", image_bytes(40, 30, seed=3)),
            (symlink, "/etc/passwd"),
        ],
    )
    job = imported(client_for("labeler"), django_capture_on_commit_callbacks, data)
    assert job["status"] == "done", job
    assert job["progress"] == 1.0
    version = DatasetVersion.objects.get(pk=job["dataset_version"])
    assert version.counts["total"] == len(TILE_ROWS) + len(PHONE_ROWS)
    assert version.counts["label"] == {"defect": 5, "ok": 1}
    assert version.counts["defect_type"] == {
        "blowhole": 1,
        "uneven": 1,
        "break": 1,
        "oil": 1,
        "other": 1,
    }
    assert job["counts"]["imported"] == 6 and job["counts"]["duplicates"] == 1
    errors = job["errors"]

    def reason(fragment):
        return next((e for e in errors if fragment in e), None)

    assert "outside the archive" in reason("tiles/../outside.jpg")
    assert "link" in reason("tiles/images/link.jpg")
    assert "not a readable image" in reason("images/broken.jpg")
    assert "not found" in reason("masks/not-there.png")
    assert "outside the folder" in reason("line 11: image ../outside.jpg")
    assert "duplicate of images/blowhole__exp2_num_40424.jpg" in reason("images/copy.jpg")
    assert not any("/tmp" in e or "scratch" in e for e in errors), errors  # archive paths only
    assert version.import_errors == errors
    masked = version.items.exclude(mask="")
    assert masked.count() == len(TILE_ROWS)


def test_the_coco_export_carries_every_mask_as_rle_read_back_by_pycocotools(
    django_capture_on_commit_callbacks, tmp_path
):
    from pycocotools import mask as mask_tools
    from pycocotools.coco import COCO

    job = imported(client_for("supervisor"), django_capture_on_commit_callbacks, tiles_zip())
    version = DatasetVersion.objects.get(pk=job["dataset_version"])
    document = client_for("labeler").get(f"/api/v1/datasets/{version.pk}/coco").json()
    # One RLE annotation per tile with a defect mask (the ok tile's mask is empty).
    assert len(document["annotations"]) == 3
    path = tmp_path / "export.json"
    path.write_text(json.dumps(document))
    coco = COCO(str(path))
    names = {c["name"] for c in document["categories"]}
    assert {"blowhole", "uneven", "break"} <= names
    for annotation in coco.loadAnns(coco.getAnnIds()):
        image = coco.loadImgs(annotation["image_id"])[0]
        expected = load_mask(TILES / tile_mask_name(image["source_name"]))
        rasterised = coco.annToMask(annotation).astype(bool)
        assert rasterised.shape == (image["height"], image["width"])
        assert np.array_equal(rasterised, expected)  # pixel-equal: IoU 1.0
        assert annotation["iscrowd"] == 1 and isinstance(annotation["segmentation"], dict)
        assert annotation["area"] == int(expected.sum())
        rle = mask_tools.encode(np.asfortranarray(expected.astype(np.uint8)))
        assert annotation["bbox"] == [float(v) for v in mask_tools.toBbox(rle)]
        category = coco.loadCats(annotation["category_id"])[0]["name"]
        assert category == image["defect_type"]


def test_a_coco_zip_with_rle_masks_imports_the_same_masks(
    django_capture_on_commit_callbacks, tmp_path, media_root
):
    from pycocotools import mask as mask_tools

    client = client_for("supervisor")
    job = imported(client, django_capture_on_commit_callbacks, tiles_zip(phones=False))
    first = DatasetVersion.objects.get(pk=job["dataset_version"])
    document = client.get(f"/api/v1/datasets/{first.pk}/coco").json()
    # One mask as compressed RLE, as other tools write it.
    annotation = document["annotations"][0]
    mask = rle_mask(annotation["segmentation"])
    compressed = mask_tools.encode(np.asfortranarray(mask.astype(np.uint8)))
    annotation["segmentation"] = {
        "size": compressed["size"],
        "counts": compressed["counts"].decode(),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for image in document["images"]:
            bundle.write(Path(media_root) / image["file_name"], image["file_name"])
        bundle.writestr("coco.json", json.dumps(document))
    second = imported(client, django_capture_on_commit_callbacks, buffer.getvalue(), name="copy")
    assert second["status"] == "done", second
    copy = DatasetVersion.objects.get(pk=second["dataset_version"])
    assert copy.counts["label"] == first.counts["label"]
    assert copy.counts["defect_type"] == first.counts["defect_type"]
    by_sha = {item.image_sha256: item for item in first.items.all()}
    for item in copy.items.exclude(mask=""):
        original = by_sha[item.image_sha256]
        assert np.array_equal(
            load_mask(Path(media_root) / item.mask), load_mask(Path(media_root) / original.mask)
        )


def test_rle_encoding_matches_pycocotools():
    from pycocotools import mask as mask_tools

    rng = np.random.default_rng(0)
    for shape in [(7, 5), (1, 1), (30, 40)]:
        mask = rng.random(shape) > 0.6
        mask[0, 0] = True
        ours = mask_rle(mask)
        theirs = mask_tools.frPyObjects(ours, *shape)
        assert np.array_equal(mask_tools.decode(theirs).astype(bool), mask)
        compressed = mask_tools.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert np.array_equal(rle_mask(compressed), mask)
    assert rle_mask(mask_rle(np.zeros((3, 4), bool))).sum() == 0


def test_a_zip_bomb_and_too_many_files_are_refused_whole(
    django_capture_on_commit_callbacks, settings
):
    client = client_for("labeler")
    settings.DATASET_IMPORT_MAX_UNCOMPRESSED_BYTES = 1_000_000
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("manifest.csv", manifest_text([["zeros.png", "ok", "", ""]]))
        bundle.writestr("zeros.png", b"\0" * 20_000_000)  # 20 MB in about 20 kB
    bomb = imported(client, django_capture_on_commit_callbacks, buffer.getvalue(), name="bomb")
    assert bomb["status"] == "failed" and "unpacks to" in bomb["error"]

    settings.DATASET_IMPORT_MAX_FILES = 5
    many = imported(client, django_capture_on_commit_callbacks, tiles_zip(), name="many")
    assert many["status"] == "failed" and "at most 5" in many["error"]
    assert not DatasetVersion.objects.exists()


def test_an_import_where_every_file_is_refused_leaves_no_version(
    django_capture_on_commit_callbacks,
):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("manifest.csv", manifest_text([["a.jpg", "ok", "", ""]]))
        bundle.writestr("a.jpg", b"garbage")
    job = imported(client_for("labeler"), django_capture_on_commit_callbacks, buffer.getvalue())
    assert job["status"] == "failed" and job["dataset_version"] is None
    assert any("a.jpg" in e and "not a readable image" in e for e in job["errors"])
    assert not DatasetVersion.objects.exists()


def test_limits_and_permissions(settings):
    labeler, inspector = client_for("labeler"), client_for("inspector")
    assert upload(inspector, tiles_zip()).status_code == 403
    assert inspector.get("/api/v1/datasets/imports/1").status_code == 403
    assert labeler.get("/api/v1/datasets/imports/999").status_code == 404
    not_zip = upload(labeler, b"plain text", filename="a.zip")
    assert (not_zip.status_code, not_zip.json()["error"]["code"]) == (415, "not_zip")
    settings.IMPORT_MAX_BYTES = 1000
    too_large = upload(labeler, tiles_zip())
    assert (too_large.status_code, too_large.json()["error"]["code"]) == (413, "too_large")
    assert not DatasetImport.objects.exists()


def test_the_name_must_be_new(django_capture_on_commit_callbacks):
    client = client_for("labeler")
    imported(client, django_capture_on_commit_callbacks, tiles_zip(phones=False))
    again = upload(client, tiles_zip(phones=False))
    assert (again.status_code, again.json()["error"]["code"]) == (409, "exists")


def test_the_command_imports_a_folder_and_a_zip(tmp_path, capsys):
    folder = tmp_path / "set"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rows = []
    for file, label, defect_type in TILE_ROWS[:2]:
        (folder / file).write_bytes((TILES / file).read_bytes())
        mask = tile_mask_name(file)
        (folder / mask).write_bytes((TILES / mask).read_bytes())
        rows.append([file, label, defect_type, mask])
    rows.append(["images/gone.jpg", "ok", "", ""])
    (folder / "manifest.csv").write_text(manifest_text(rows))
    call_command("dataset_import", str(folder), "--name", "from-folder", "--json")
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "done" and report["counts"]["imported"] == 2
    assert any("gone.jpg" in e for e in report["errors"])
    version = DatasetVersion.objects.get(pk=report["dataset_version"])
    assert version.counts["defect_type"] == {"blowhole": 1, "uneven": 1}

    archive = tmp_path / "tiles.zip"
    archive.write_bytes(tiles_zip(phones=False))
    call_command("dataset_import", str(archive), "--name", "from-zip")
    assert "done" in capsys.readouterr().out
    assert DatasetVersion.objects.get(name="from-zip").counts["total"] == len(TILE_ROWS)
    with pytest.raises(CommandError, match="exists already"):
        call_command("dataset_import", str(archive), "--name", "from-zip")


def test_the_task_runs_only_a_queued_import(django_capture_on_commit_callbacks):
    from labeling.tasks import dataset_import_execute

    job = imported(client_for("labeler"), django_capture_on_commit_callbacks, tiles_zip())
    assert job["status"] == "done"
    assert dataset_import_execute(job["id"]) is None  # a redelivered message changes nothing
    assert DatasetVersion.objects.count() == 1


def test_the_datasets_page_has_the_import_form_with_its_limits(
    django_capture_on_commit_callbacks, settings
):
    labeler = client_for("labeler")
    imported(labeler, django_capture_on_commit_callbacks, tiles_zip(phones=False), name="<b>x")
    page = labeler.get("/label/datasets/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="import-form"' in html and 'name="archive"' in html
    assert "2.0\xa0GB" in html and str(settings.DATASET_IMPORT_MAX_FILES) in html
    assert "&lt;b&gt;x" in html and "<b>x" not in html  # names are escaped
    assert client_for("inspector").get("/label/datasets/").status_code == 403
