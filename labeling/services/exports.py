"""Exporting a dataset version as a zip in the shared/datasets layout, which the import reads back.

The zip holds `images/` (the stored bytes, as they were imported or captured), `masks/` (one PNG
per image that has one: nonzero where the defect is, the item's own mask or a defect's regions
filled in), `manifest.csv` (`file,label,defect_type,mask_file`, then `group` and
`split`, which vision.datasets reads or ignores) and `regions.json` (`{"images": {file:
[regions]}}`: every box, polygon and brush region as stored, which a manifest cannot hold).
POST /api/v1/datasets/imports takes it back with every region.

It is written into a scratch file, one stored file at a time, so memory stays flat whatever the
size of the version; the caller streams it and the file goes when it is closed.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import zipfile
from pathlib import Path
from typing import IO

from core.blobs import blob_local_path, blob_open, blob_read, blob_scratch
from labeling import regions as region_tools
from labeling.models import DatasetItem, DatasetVersion
from vision.images import image_size

REGIONS_FILE = "regions.json"
ZIP_MANIFEST_COLUMNS = ("file", "label", "defect_type", "mask_file", "group", "split")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _entry_stem(row: DatasetItem) -> str:
    """A readable name that is unique in the version: the image's sha256 prefix and its name."""
    original = Path(row.source_name or row.image).stem
    return f"{row.image_sha256[:16]}-{_UNSAFE.sub('_', original)[:80] or 'image'}"


def _mask_png(row: DatasetItem) -> bytes | None:
    """The defect's pixels as a PNG: the stored mask (already one, 0/255; an ok image keeps
    its empty one), or a defect's regions filled in; None for an image with neither (an ok
    image without a mask, a defect without a place)."""
    if row.mask:
        return blob_read(row.mask)
    if row.label != "defect" or not row.regions:
        return None
    width, height = image_size(blob_local_path(row.image))
    return region_tools.mask_png(region_tools.regions_mask(row.regions, width=width, height=height))


def _write_version(version: DatasetVersion, folder: Path) -> Path:
    archive_path = folder / "dataset.zip"
    manifest_path, regions_path = folder / "manifest.csv", folder / REGIONS_FILE
    date_time = version.created_at.timetuple()[:6]
    with zipfile.ZipFile(archive_path, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as bundle:
        with (
            manifest_path.open("w", newline="", encoding="utf-8") as manifest,
            regions_path.open("w", encoding="utf-8") as regions,
        ):
            writer = csv.writer(manifest)
            writer.writerow(ZIP_MANIFEST_COLUMNS)
            regions.write('{"images": {')
            separator = ""
            rows = DatasetItem.objects.filter(dataset_version=version).order_by("id")
            for row in rows.iterator(chunk_size=500):
                stem = _entry_stem(row)
                file = f"images/{stem}{Path(row.image).suffix.lower() or '.jpg'}"
                # Images are compressed already: stored as they are, copied in 1 MB pieces.
                info = zipfile.ZipInfo(file, date_time=date_time)
                info.compress_type = zipfile.ZIP_STORED
                with (
                    blob_open(row.image) as source,
                    bundle.open(info, "w", force_zip64=True) as sink,
                ):
                    shutil.copyfileobj(source, sink, 1 << 20)
                mask = _mask_png(row)
                mask_file = f"masks/{stem}.png" if mask is not None else ""
                if mask is not None:
                    bundle.writestr(zipfile.ZipInfo(mask_file, date_time=date_time), mask)
                writer.writerow([file, row.label, row.defect_type, mask_file, row.group, row.split])
                if row.regions:
                    regions.write(f"{separator}{json.dumps(file)}: ")
                    regions.write(json.dumps(row.regions, separators=(",", ":")))
                    separator = ",\n"
            regions.write("}}\n")
        bundle.write(manifest_path, "manifest.csv")
        bundle.write(regions_path, REGIONS_FILE)
    return archive_path


def dataset_version_zip(*, dataset_version: DatasetVersion) -> IO[bytes]:
    """The version's zip, open for reading from its start. Its scratch folder is gone already
    (the open file keeps the bytes until it is closed), so nothing is left behind even when a
    download is cut off."""
    folder = blob_scratch(f"export-{dataset_version.pk}")
    try:
        return _write_version(dataset_version, folder).open("rb")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
