"""Annotating and reviewing: taking the next task (leased), autosave, submit, consensus of two
labelers, accept / send back, and bulk imports of images as tasks."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.errors import ApplicationError
from labeling import queue, selectors
from labeling.models import (
    Annotation,
    AnnotationStatus,
    ImageLabel,
    LabelTask,
    LabelTaskSource,
    LabelTaskStatus,
)
from labeling.regions import pre_annotation_from_inspection, regions_iou, regions_normalize
from labeling.services.datasets import _item_regions, _read_items, items_store

# How long a task stays a labeler's without a save; every autosave renews it.
LEASE_SECONDS = 300
# Two labelers agree when their image labels match and their regions overlap this much.
AGREEMENT_IOU = 0.5


def _pre_label(task: LabelTask) -> str:
    return {"fail": ImageLabel.DEFECT, "pass": ImageLabel.OK}.get(task.pre_verdict, "")


@transaction.atomic
def task_next(
    *,
    user: Any,
    line: str | None = None,
    source: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Annotation | None:
    """The labeler's next task, as their annotation of it (a draft with a lease).

    Work already theirs comes first (an unfinished draft, or one a reviewer sent back); then
    the most valuable open task nobody else holds (labeling.queue). Rows are locked with
    SKIP LOCKED, so two labelers asking at once never get the same task.
    """
    now = timezone.now()
    mine = queue.own_open_annotation(user=user)
    if mine is not None:
        mine = Annotation.objects.select_for_update().get(pk=mine.pk)
        mine.lease_expires_at = now + timedelta(seconds=LEASE_SECONDS)
        mine.save(update_fields=["lease_expires_at", "updated_at"])
        return mine
    candidates = queue.task_queue(user=user, line=line, source=source, since=since, until=until)
    for task_id in candidates.values_list("pk", flat=True)[:50]:
        # One row at a time: locking the whole page would hide every task from the others.
        task = (
            LabelTask.objects.select_for_update(skip_locked=True)
            .filter(pk=task_id, status=LabelTaskStatus.OPEN)
            .first()
        )
        if task is None or not queue.task_is_free_for(task=task, user=user, now=now):
            continue
        regions = pre_annotation_from_inspection(task.pre_annotation)
        annotation, _ = Annotation.objects.update_or_create(
            task=task,
            labeler=user,
            defaults={
                "status": AnnotationStatus.DRAFT,
                "label": _pre_label(task),
                "regions": regions,
                "lease_expires_at": now + timedelta(seconds=LEASE_SECONDS),
            },
        )
        if task.required_annotations == 1:
            # A draft whose lease ran out loses the task; its labeler gets another one.
            task.annotations.exclude(pk=annotation.pk).filter(
                status=AnnotationStatus.DRAFT, lease_expires_at__lte=now
            ).update(status=AnnotationStatus.SUPERSEDED)
        return annotation
    return None


def _own_for_update(annotation_id: Any, user: Any) -> Annotation:
    task_id = Annotation.objects.filter(pk=annotation_id).values_list("task_id", flat=True).first()
    if task_id is None:
        raise ApplicationError("No such annotation.", code="not_found", status=404)
    # Task first, then annotation: the order every writer locks them in (a review, task_next),
    # so two requests on one task wait for each other instead of deadlocking.
    LabelTask.objects.select_for_update().filter(pk=task_id).first()
    annotation = (
        Annotation.objects.select_for_update(of=("self",))
        .select_related("task")
        .filter(pk=annotation_id)
        .first()
    )
    if annotation is None:
        raise ApplicationError("No such annotation.", code="not_found", status=404)
    if annotation.labeler_id != user.pk:
        raise ApplicationError(
            "This annotation belongs to another labeler.", code="not_yours", status=403
        )
    if annotation.status not in (AnnotationStatus.DRAFT, AnnotationStatus.REJECTED):
        raise ApplicationError(
            f"This annotation is {annotation.get_status_display().lower()}; it cannot change.",
            code="not_editable",
            status=409,
        )
    return annotation


def _apply(annotation: Annotation, *, label: str | None, regions: Any, revision: int | None):
    if revision is not None and revision != annotation.revision:
        raise ApplicationError(
            "This annotation was saved elsewhere (another tab?); reload to see the latest.",
            code="stale_revision",
            status=409,
            extra={"revision": annotation.revision},
        )
    if label is not None:
        if label not in ("", *ImageLabel.values):
            raise ApplicationError("label must be ok or defect.", code="invalid_label")
        annotation.label = label
    if regions is not None:
        task = annotation.task
        annotation.regions = regions_normalize(
            regions,
            width=task.width,
            height=task.height,
            defect_types=selectors.defect_type_names_accepted(task=task, annotation=annotation),
        )
    annotation.revision += 1


@transaction.atomic
def annotation_save(
    *,
    annotation_id: Any,
    user: Any,
    label: str | None = None,
    regions: Any = None,
    revision: int | None = None,
) -> Annotation:
    """Autosave: the labeler's current label and regions; renews the lease.

    With `revision` (the one the page last saw) an older write is refused, so a stale tab
    or a retried request never overwrites newer work.
    """
    annotation = _own_for_update(annotation_id, user)
    _apply(annotation, label=label, regions=regions, revision=revision)
    annotation.lease_expires_at = timezone.now() + timedelta(seconds=LEASE_SECONDS)
    annotation.save()
    return annotation


@transaction.atomic
def annotation_submit(
    *,
    annotation_id: Any,
    user: Any,
    label: str | None = None,
    regions: Any = None,
    revision: int | None = None,
) -> Annotation:
    """The labeler is done. With one labeler per task it goes to review; with two, agreeing
    annotations are accepted at once and conflicts go to review."""
    annotation = _own_for_update(annotation_id, user)
    _apply(annotation, label=label, regions=regions, revision=revision)
    if annotation.label not in ImageLabel.values:
        raise ApplicationError("Choose ok or defect before submitting.", code="no_label")
    if annotation.label == ImageLabel.OK:
        annotation.regions = []
    now = timezone.now()
    annotation.status = AnnotationStatus.SUBMITTED
    annotation.submitted_at = now
    annotation.lease_expires_at = None
    annotation.save()

    task = LabelTask.objects.select_for_update().get(pk=annotation.task_id)
    submitted = list(
        task.annotations.filter(status=AnnotationStatus.SUBMITTED).order_by("submitted_at", "id")
    )
    if len(submitted) < task.required_annotations:
        return annotation
    if len(submitted) >= 2:
        first, second = submitted[0], submitted[1]
        width, height = task.width or 1, task.height or 1
        iou = regions_iou(first.regions, second.regions, width=width, height=height)
        same_label = first.label == second.label
        agreed = same_label and (first.label == ImageLabel.OK or iou >= AGREEMENT_IOU)
        task.agreement = {
            "label_match": same_label,
            "region_iou": round(iou, 4),
            "agreed": agreed,
            "labelers": [first.labeler_id, second.labeler_id],
        }
        if agreed:
            _accept(task, first, reviewer=None, note="two labelers agreed", now=now)
            return annotation
    task.status = LabelTaskStatus.REVIEW
    task.save()
    return annotation


@transaction.atomic
def annotation_release(*, annotation_id: Any, user: Any) -> None:
    """The labeler skips a task: an untouched draft is dropped, and the task is free again."""
    annotation = _own_for_update(annotation_id, user)
    if annotation.status == AnnotationStatus.DRAFT and annotation.revision == 0:
        annotation.delete()
        return
    annotation.lease_expires_at = timezone.now()
    annotation.save(update_fields=["lease_expires_at", "updated_at"])


def _accept(task: LabelTask, annotation: Annotation, *, reviewer: Any, note: str, now) -> None:
    annotation.status = AnnotationStatus.ACCEPTED
    annotation.reviewed_by = reviewer
    annotation.reviewed_at = now
    annotation.review_note = note
    annotation.save()
    task.annotations.exclude(pk=annotation.pk).filter(
        status__in=[AnnotationStatus.SUBMITTED, AnnotationStatus.DRAFT]
    ).update(status=AnnotationStatus.SUPERSEDED)
    task.status = LabelTaskStatus.DONE
    task.accepted_annotation = annotation
    task.reviewed_at = now
    task.save()


def _submitted_for_review(annotation_id: Any, reviewer: Any) -> tuple[LabelTask, Annotation]:
    annotation = Annotation.objects.filter(pk=annotation_id).first()
    if annotation is None:
        raise ApplicationError("No such annotation.", code="not_found", status=404)
    task = LabelTask.objects.select_for_update().get(pk=annotation.task_id)
    annotation = Annotation.objects.select_for_update().get(pk=annotation_id)
    if annotation.status != AnnotationStatus.SUBMITTED or task.status != LabelTaskStatus.REVIEW:
        raise ApplicationError(
            "This annotation is not waiting for review.", code="not_in_review", status=409
        )
    if annotation.labeler_id == reviewer.pk:
        raise ApplicationError(
            "A reviewer cannot review their own annotation.", code="own_annotation", status=403
        )
    return task, annotation


@transaction.atomic
def review_accept(
    *,
    annotation_id: Any,
    reviewer: Any,
    note: str = "",
    label: str | None = None,
    regions: Any = None,
) -> Annotation:
    """The reviewer accepts an annotation (optionally correcting it): the task is done, and its
    label will be in the next dataset version."""
    task, annotation = _submitted_for_review(annotation_id, reviewer)
    if label is not None or regions is not None:
        _apply(annotation, label=label, regions=regions, revision=None)
        if annotation.label == ImageLabel.OK:
            annotation.regions = []
    _accept(task, annotation, reviewer=reviewer, note=note, now=timezone.now())
    return annotation


@transaction.atomic
def review_send_back(*, annotation_id: Any, reviewer: Any, note: str) -> Annotation:
    """The reviewer returns an annotation to its labeler with a note; it is first in their
    queue again."""
    if not note.strip():
        raise ApplicationError(
            "Say what to fix when sending an annotation back.", code="note_required"
        )
    task, annotation = _submitted_for_review(annotation_id, reviewer)
    now = timezone.now()
    annotation.status = AnnotationStatus.REJECTED
    annotation.reviewed_by = reviewer
    annotation.reviewed_at = now
    annotation.review_note = note.strip()
    annotation.rework_count += 1
    annotation.lease_expires_at = now + timedelta(seconds=LEASE_SECONDS)
    annotation.save()
    task.status = LabelTaskStatus.OPEN
    task.save()
    return annotation


def task_import(
    *, path: str | Path, required_annotations: int = 1
) -> tuple[list[LabelTask], list[str]]:
    """Images imported in bulk (a manifest CSV or a class folder) become label tasks, their
    labels and boxes the pre-annotation. Bad files are reported one by one; the good ones are
    imported in one transaction."""
    if required_annotations not in (1, 2):
        raise ApplicationError("required_annotations must be 1 or 2.", code="invalid_count")
    items, errors, root = _read_items(Path(path))
    stored, file_errors = items_store(items, root=root)
    tasks = []
    with transaction.atomic():
        for file in stored:
            item = file.item
            regions = _item_regions(item) if item.label == "defect" else []
            tasks.append(
                LabelTask.objects.create(
                    source=LabelTaskSource.IMPORT,
                    image=file.image,
                    width=file.width,
                    height=file.height,
                    group=item.group or Path(file.source_name).name,
                    source_detail=file.source_name,
                    pre_verdict="fail" if item.label == "defect" else "pass",
                    pre_annotation=regions,
                    required_annotations=required_annotations,
                    priority=queue.task_priority(source=LabelTaskSource.IMPORT, model_score=None),
                )
            )
    return tasks, errors + file_errors
