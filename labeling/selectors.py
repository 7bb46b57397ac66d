"""Reads of labeling: dataset items for training and evaluation, counts for retraining."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from config.errors import ApplicationError
from labeling.models import DatasetItem, DatasetSplit, DatasetVersion, LabelTask, LabelTaskStatus
from labeling.regions import region_integer_box
from labeling.storage import media_path
from vision.datasets import Item


def dataset_item_to_item(row: DatasetItem) -> Item:
    boxes = tuple(region_integer_box(r) for r in row.regions) if row.label == "defect" else ()
    return Item(
        label=row.label,
        path=media_path(row.image),
        defect_type=row.defect_type,
        mask_path=media_path(row.mask) if row.mask else None,
        boxes=boxes,
        group=row.group,
    )


def dataset_version_items(*, dataset_version: Any, split: str | None = None) -> list[Item]:
    """The frozen items of a version (all, or one split: train, validation, test) as
    vision.datasets.Item, in a stable order: what vision.train and vision.evaluation take."""
    version_id = getattr(dataset_version, "pk", dataset_version)
    rows = DatasetItem.objects.filter(dataset_version_id=version_id)
    if split is not None:
        if split not in DatasetSplit.values:
            raise ApplicationError(
                f"split must be one of {', '.join(DatasetSplit.values)}.", code="invalid_split"
            )
        rows = rows.filter(split=split)
    return [dataset_item_to_item(row) for row in rows.order_by("id")]


def dataset_version_get(*, dataset_version_id: int) -> DatasetVersion:
    version = DatasetVersion.objects.filter(pk=dataset_version_id).first()
    if version is None:
        raise ApplicationError("No such dataset version.", code="not_found", status=404)
    return version


def reviewed_annotations_since(*, line: Any = None, since: datetime | None = None) -> int:
    """How many tasks got an accepted annotation (reviewed, or two labelers agreeing) since
    `since` (ever, when None), on one line (code or ProductionLine) or all."""
    tasks = LabelTask.objects.filter(status=LabelTaskStatus.DONE, reviewed_at__isnull=False)
    if line is not None:
        tasks = tasks.filter(line__code=getattr(line, "code", line))
    if since is not None:
        tasks = tasks.filter(reviewed_at__gte=since)
    return tasks.count()


def dataset_item_files(*, dataset_version: Any) -> list[tuple[DatasetItem, Path]]:
    """Each item with its image's absolute path (for exports)."""
    version_id = getattr(dataset_version, "pk", dataset_version)
    rows = DatasetItem.objects.filter(dataset_version_id=version_id).order_by("id")
    return [(row, media_path(row.image)) for row in rows]
