"""Annotation tasks, annotations and their review, and the frozen dataset versions built from them.

Regions (pre-annotations, annotations, dataset items) are JSON lists of
`{"shape": "box" | "polygon", "box": [x0, y0, x1, y1], "points": [[x, y], ...], "defect_type": ...}`
in pixels of the image; `points` only for polygons (their `box` is the polygon's bounding box).
A brush region is `{"shape": "mask", "box": [x0, y0, x1, y1] (whole pixels, x1/y1 exclusive),
"mask": {"size": [y1 - y0, x1 - x0], "counts": "<COCO compressed RLE>"}, "defect_type": ...}`:
its painted pixels over its box (labeling.masks).
`defect_type` is the name of a type of the line's taxonomy (core.models.DefectType), or one an
import brought; data keeps the name as a string.
An inspector's region may carry `"rejected": true` (a model region that was wrong).
"""

from django.conf import settings
from django.db import models
from django.db.models import Q


class ImageLabel(models.TextChoices):
    OK = "ok", "OK"
    DEFECT = "defect", "Defect"


class LabelTaskSource(models.TextChoices):
    OVERRIDE = "override", "An inspector overrode the model"
    UNCERTAIN = "uncertain", "The model was uncertain"
    AUDIT = "audit", "Audit sample"
    SHADOW = "shadow", "The shadow model disagreed with the verdict"
    DRIFT = "drift", "Monitoring: a capture of a drifted window"
    IMPORT = "import", "Imported in bulk"
    MANUAL = "manual", "Decided by a human without a model"


class LabelTaskStatus(models.TextChoices):
    OPEN = "open", "Open: needs annotation"
    REVIEW = "review", "Waiting for review"
    DONE = "done", "Done: annotation accepted"


class LabelTask(models.Model):
    # Captures of the lines, or (imports) an image of its own under MEDIA_ROOT.
    capture = models.ForeignKey(
        "inspection.Capture",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="label_tasks",
    )
    line = models.ForeignKey(
        "core.ProductionLine",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="label_tasks",
    )
    source = models.CharField(max_length=16, choices=LabelTaskSource.choices)
    status = models.CharField(
        max_length=16, choices=LabelTaskStatus.choices, default=LabelTaskStatus.OPEN
    )
    image = models.CharField(max_length=300, blank=True)  # path under MEDIA_ROOT
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    # Items of one phone share a group (the capture id, or the imported file): splits keep it whole.
    group = models.CharField(max_length=200, blank=True)
    source_detail = models.CharField(max_length=300, blank=True)  # e.g. the imported file name
    # The inspector's (or an import's) verdict and regions, offered as a starting point.
    pre_verdict = models.CharField(max_length=8, blank=True)
    pre_annotation = models.JSONField(default=list, blank=True)
    # The model's output, shown beside the inspector's, and the score behind the queue order.
    model_regions = models.JSONField(default=list, blank=True)
    model_score = models.FloatField(null=True, blank=True)
    # Higher first in the queue (see labeling.queue.task_priority).
    priority = models.FloatField(default=0.0, db_index=True)
    required_annotations = models.PositiveSmallIntegerField(default=1)
    # With two labelers: image label match and region IoU, and whether it went to review.
    agreement = models.JSONField(null=True, blank=True)
    accepted_annotation = models.ForeignKey(
        "labeling.Annotation",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    reviewed_at = models.DateTimeField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["capture", "source"], name="label_task_once_per_source")
        ]
        indexes = [models.Index(fields=["status", "-priority"], name="label_task_queue")]

    def __str__(self) -> str:
        return f"{self.source} task {self.pk} for {self.capture_id or self.source_detail}"


class AnnotationStatus(models.TextChoices):
    DRAFT = "draft", "Draft (autosaved)"
    SUBMITTED = "submitted", "Submitted"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Sent back"
    SUPERSEDED = "superseded", "Not chosen"


class Annotation(models.Model):
    """One labeler's work on one task; the lease keeps the task theirs while they work."""

    task = models.ForeignKey(LabelTask, on_delete=models.CASCADE, related_name="annotations")
    labeler = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="annotations"
    )
    status = models.CharField(
        max_length=16, choices=AnnotationStatus.choices, default=AnnotationStatus.DRAFT
    )
    label = models.CharField(max_length=8, choices=ImageLabel.choices, blank=True)
    regions = models.JSONField(default=list, blank=True)
    # Bumped by every save: an autosave carrying an older revision is refused (two tabs).
    revision = models.PositiveIntegerField(default=0)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.TextField(blank=True)
    rework_count = models.PositiveIntegerField(default=0)  # times sent back

    class Meta:
        ordering = ["task", "started_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["task", "labeler"], name="annotation_one_per_labeler")
        ]

    def __str__(self) -> str:
        return f"{self.labeler_id} on task {self.task_id}: {self.status}"


class DatasetSplit(models.TextChoices):
    TRAIN = "train", "Train"
    VALIDATION = "validation", "Validation"
    TEST = "test", "Test"


class FrozenError(Exception):
    """A dataset version (or one of its items) was about to change after creation."""


class DatasetVersion(models.Model):
    """A frozen set of reviewed labels with a stable split; training and evaluation name it.

    Created only by labeling.services (dataset_version_create, dataset_version_from_manifest,
    dataset_version_from_coco); never updated: saving an existing row raises FrozenError.
    """

    name = models.CharField(max_length=120, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    description = models.TextField(blank=True)  # where the items came from (filters, file)
    content_hash = models.CharField(max_length=64, db_index=True)
    split_fractions = models.JSONField(default=list)  # [train, validation, test]
    seed = models.IntegerField(default=0)
    # {"total": n, "label": {...}, "defect_type": {...}, "line": {...}, "split": {...},
    #  "split_label": {"train": {"ok": n, "defect": n}, ...}}
    counts = models.JSONField(default=dict)
    # Files an import left out, one message each.
    import_errors = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        # The one rule kept in the model: a version that training referred to cannot drift.
        if not self._state.adding:
            raise FrozenError(f"dataset version {self.name!r} is frozen")
        super().save(*args, **kwargs)


class DatasetItem(models.Model):
    dataset_version = models.ForeignKey(
        DatasetVersion, on_delete=models.CASCADE, related_name="items"
    )
    image = models.CharField(max_length=300)  # path under MEDIA_ROOT (content-addressed)
    image_sha256 = models.CharField(max_length=64)
    label = models.CharField(max_length=8, choices=ImageLabel.choices)
    defect_type = models.CharField(max_length=32, blank=True)
    regions = models.JSONField(default=list, blank=True)
    mask = models.CharField(max_length=300, blank=True)  # path under MEDIA_ROOT, or ""
    split = models.CharField(max_length=16, choices=DatasetSplit.choices)
    group = models.CharField(max_length=200)  # capture id or source file: never in two splits
    line_code = models.CharField(max_length=32, blank=True)
    source_name = models.CharField(max_length=300, blank=True)  # original file name
    task = models.ForeignKey(
        LabelTask, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["dataset_version", "id"]
        indexes = [models.Index(fields=["dataset_version", "split"], name="dataset_item_split")]
        constraints = [
            models.CheckConstraint(
                condition=Q(label="defect") | Q(defect_type=""), name="dataset_item_ok_no_type"
            )
        ]

    def __str__(self) -> str:
        return f"{self.dataset_version_id}:{self.source_name or self.image}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise FrozenError("dataset items are frozen with their version")
        super().save(*args, **kwargs)


class DatasetImportStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class DatasetImport(models.Model):
    """An uploaded archive on its way into a DatasetVersion (labeling.services.imports).

    Progress and the per-file report live in this row, written by the worker; the version is
    written in one transaction at the end, so a failed import leaves none.
    """

    name = models.CharField(max_length=120)  # of the version it makes
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    status = models.CharField(
        max_length=16, choices=DatasetImportStatus.choices, default=DatasetImportStatus.QUEUED
    )
    archive = models.CharField(max_length=300, blank=True)  # blob name (imports/<sha>.zip)
    archive_name = models.CharField(max_length=300, blank=True)  # as uploaded
    archive_size = models.BigIntegerField(default=0)
    progress = models.FloatField(default=0.0)  # 0..1
    # {"entries": n, "rows": n, "imported": n, "refused": n, "duplicates": n, "seen_before": n}
    counts = models.JSONField(default=dict, blank=True)
    errors = models.JSONField(default=list, blank=True)  # one message per refused file
    error = models.TextField(blank=True)  # why the whole import failed
    dataset_version = models.ForeignKey(
        DatasetVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    celery_task_id = models.CharField(max_length=64, blank=True)
    worker_id = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"import {self.pk} {self.name!r}: {self.status}"
