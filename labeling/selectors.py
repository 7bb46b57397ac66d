"""Reads of labeling: dataset items for training and evaluation, counts for retraining, and
the defect type names labeling data carries (what stays accepted when a taxonomy changes)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from django.db.models import QuerySet

from core import selectors as core_selectors
from core.blobs import blob_local_path
from core.errors import ApplicationError
from labeling.models import (
    Annotation,
    AnnotationStatus,
    DatasetImport,
    DatasetItem,
    DatasetSplit,
    DatasetVersion,
    LabelTask,
    LabelTaskStatus,
)
from labeling.regions import region_defect_types, region_integer_box
from vision.datasets import Item


def dataset_item_to_item(row: DatasetItem) -> Item:
    boxes = tuple(region_integer_box(r) for r in row.regions) if row.label == "defect" else ()
    return Item(
        label=row.label,
        path=blob_local_path(row.image),
        defect_type=row.defect_type,
        mask_path=blob_local_path(row.mask) if row.mask else None,
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
    return [(row, blob_local_path(row.image)) for row in rows]


def review_queue(*, reviewer: Any = None):
    """Submitted annotations of tasks in review, conflicts (two labelers disagreeing) first;
    without the reviewer's own work."""
    from django.db.models import BooleanField, Case, Value, When

    annotations = Annotation.objects.filter(
        status=AnnotationStatus.SUBMITTED, task__status=LabelTaskStatus.REVIEW
    ).select_related("task__line", "labeler", "reviewed_by")
    if reviewer is not None:
        annotations = annotations.exclude(labeler=reviewer)
    return annotations.annotate(
        conflict=Case(
            When(task__agreement__isnull=False, then=Value(True)),
            default=Value(False),
            output_field=BooleanField(),
        )
    ).order_by("-conflict", "-task__priority", "submitted_at", "id")


def labeler_stats() -> list[dict[str, Any]]:
    """Per labeler: submitted, accepted, sent back (rework), median seconds per task, tasks
    per hour of work, and agreement with a second labeler where a task had two."""
    from statistics import median

    rows: dict[str, dict[str, Any]] = {}
    annotations = Annotation.objects.exclude(submitted_at__isnull=True).select_related(
        "labeler", "task"
    )
    for annotation in annotations:
        row = rows.setdefault(
            annotation.labeler.username,
            {"seconds": [], "submitted": 0, "accepted": 0, "sent_back": 0, "agree": [], "iou": []},
        )
        row["submitted"] += 1
        row["accepted"] += annotation.status == AnnotationStatus.ACCEPTED
        row["sent_back"] += annotation.rework_count
        row["seconds"].append((annotation.submitted_at - annotation.started_at).total_seconds())
        agreement = annotation.task.agreement
        if agreement and annotation.labeler_id in agreement.get("labelers", []):
            row["agree"].append(bool(agreement.get("agreed")))
            row["iou"].append(float(agreement.get("region_iou", 0)))
    result = []
    for name, row in sorted(rows.items()):
        seconds = row["seconds"]
        total = sum(seconds)
        result.append(
            {
                "labeler": name,
                "submitted": row["submitted"],
                "accepted": row["accepted"],
                "sent_back": row["sent_back"],
                "rework_rate": round(row["sent_back"] / row["submitted"], 3),
                "median_seconds": round(median(seconds), 1) if seconds else None,
                "per_hour": round(3600 * len(seconds) / total, 1) if total > 0 else None,
                "agreement_rate": round(sum(row["agree"]) / len(row["agree"]), 3)
                if row["agree"]
                else None,
                "mean_region_iou": round(sum(row["iou"]) / len(row["iou"]), 3)
                if row["iou"]
                else None,
            }
        )
    return result


def dataset_version_list(*, limit: int = 100) -> QuerySet[DatasetVersion]:
    """The newest dataset versions first."""
    return DatasetVersion.objects.select_related("created_by")[:limit]


def dataset_item_line_codes(*, dataset_version: Any, groups: set[str]) -> dict[str, str]:
    """Which line each group of a version's items came from (kept with the item at freezing;
    a capture's group is `capture:<pk>` or its serial number, never a bare capture id)."""
    version_id = getattr(dataset_version, "pk", dataset_version)
    rows = (
        DatasetItem.objects.filter(dataset_version_id=version_id, group__in=groups)
        .exclude(line_code="")
        .values_list("group", "line_code")
    )
    return dict(rows)


def annotation_get(*, annotation_id: Any) -> Annotation:
    annotation = (
        Annotation.objects.select_related("task__line", "labeler", "reviewed_by")
        .filter(pk=annotation_id)
        .first()
    )
    if annotation is None:
        raise ApplicationError("No such annotation.", code="not_found", status=404)
    return annotation


def task_get(*, task_id: Any) -> LabelTask:
    task = LabelTask.objects.select_related("line").filter(pk=task_id).first()
    if task is None:
        raise ApplicationError("No such task.", code="not_found", status=404)
    return task


def dataset_import_get(*, import_id: int) -> DatasetImport:
    job = DatasetImport.objects.select_related("dataset_version").filter(pk=import_id).first()
    if job is None:
        raise ApplicationError("No such dataset import.", code="not_found", status=404)
    return job


def dataset_import_list(*, limit: int = 20) -> QuerySet[DatasetImport]:
    return DatasetImport.objects.select_related("created_by")[:limit]


# --- Defect type names in labeling data ---


def defect_type_names_in_datasets() -> set[str]:
    """The main defect types of every dataset version's items (their counts), e.g. the
    `blowhole` of an imported set: regions may keep carrying them whatever the taxonomy says."""
    names: set[str] = set()
    for counts in DatasetVersion.objects.values_list("counts", flat=True):
        found = (counts or {}).get("defect_type") or {}
        names.update(str(name) for name in found if name)
    return names


def defect_type_names_accepted(
    *, task: LabelTask, annotation: Annotation | None = None
) -> set[str]:
    """What a labeler's region on this task may be: the active types of the task's line's
    taxonomy, and every name the data already holds (the task's own regions, the annotation's
    saved ones, dataset versions), so a deactivated or imported type stays readable and savable."""
    names = set(core_selectors.defect_type_names_active(line=task.line))
    names |= defect_type_names_in_datasets()
    names |= region_defect_types(
        task.pre_annotation, task.model_regions, annotation.regions if annotation else ()
    )
    return names


def regions_json_pattern(name: str) -> str:
    """How a region carrying this type reads in a JSON column's text (PostgreSQL's jsonb and
    SQLite's json.dumps both write `"key": "value"`)."""
    return json.dumps({"defect_type": name})[1:-1]


def defect_type_in_labeling_data(*, name: str) -> bool:
    """Whether any label task, annotation or dataset item carries this defect type."""
    pattern = regions_json_pattern(name)
    return (
        DatasetItem.objects.filter(defect_type=name).exists()
        or DatasetItem.objects.filter(regions__icontains=pattern).exists()
        or Annotation.objects.filter(regions__icontains=pattern).exists()
        or LabelTask.objects.filter(pre_annotation__icontains=pattern).exists()
        or LabelTask.objects.filter(model_regions__icontains=pattern).exists()
    )
