"""Image retention: each line keeps its capture images `image_retention_days` days (a line
setting; none: for ever). Older images are deleted from the blob store, with the heatmaps made
from them; the capture, decision and prediction rows stay (`Capture.image_deleted_at` says when).

An image is kept past its time while something still needs it: a label task (any status: its
annotation and review show the image) or a dataset version uses it, a human has yet to judge
the capture (pending, or an audit sample awaiting review), or another capture with the same
bytes (content-addressed: one file) is still within its line's time.

A beat job (`inspection.retention_apply`) runs it in bounded batches; each run reports what it
freed per line, and a second run over the same state frees nothing.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from core import blobs
from core.models import ProductionLine
from inspection.models import AuditStatus, Capture, DecisionStatus, Prediction
from labeling.models import DatasetItem, LabelTask

logger = logging.getLogger(__name__)

BATCH_SIZE = 500


@dataclass
class LineRetention:
    code: str
    days: int
    deleted_images: int = 0
    kept_in_use: int = 0
    freed_bytes: int = 0
    heatmaps_deleted: int = 0


@dataclass
class RetentionReport:
    lines: dict[str, LineRetention] = field(default_factory=dict)

    @property
    def freed_bytes(self) -> int:
        return sum(line.freed_bytes for line in self.lines.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "freed_bytes": self.freed_bytes,
            "lines": {code: vars(line) for code, line in self.lines.items()},
        }


def _expired(line: ProductionLine, now: datetime):
    """This line's captures past their time whose image is still stored."""
    cutoff = now - timedelta(days=line.image_retention_days)
    return Capture.objects.filter(line=line, received_at__lt=cutoff, image_deleted_at__isnull=True)


def _in_use() -> Q:
    """Captures whose image something still needs (see the module's docstring)."""
    awaiting_human = Q(decision__status=DecisionStatus.PENDING) | Q(
        decision__audit_status=AuditStatus.PENDING
    )
    labelled = Exists(
        LabelTask.objects.filter(Q(capture=OuterRef("pk")) | Q(image=OuterRef("image")))
    )
    in_dataset = Exists(DatasetItem.objects.filter(image=OuterRef("image")))
    return awaiting_human | Q(labelled) | Q(in_dataset)


def _shared_with_a_kept_capture(capture: Capture, now: datetime) -> bool:
    """Another capture holds the same file and keeps it (its line keeps images for ever, or it
    is still within its line's time)."""
    others = Capture.objects.filter(image=capture.image, image_deleted_at__isnull=True).exclude(
        pk=capture.pk
    )
    for other in others.select_related("line")[:50]:
        days = other.line.image_retention_days
        if days is None or other.received_at >= now - timedelta(days=days):
            return True
    return False


def _delete_image(capture: Capture, result: LineRetention, now: datetime) -> None:
    with transaction.atomic():
        locked = (
            Capture.objects.select_for_update(skip_locked=True)
            .filter(pk=capture.pk, image_deleted_at__isnull=True)
            .first()
        )
        if locked is None:  # another run took it
            return
        locked.image_deleted_at = now
        locked.save(update_fields=["image_deleted_at"])
        if not _shared_with_a_kept_capture(locked, now):
            result.freed_bytes += blobs.blob_delete(locked.image)
            result.deleted_images += 1
    models = Prediction.objects.filter(capture=capture).values_list(
        "model_version__sha256", flat=True
    )
    for sha256 in set(models):
        name = f"heatmaps/{sha256[:2]}/{sha256[:16]}-{capture.image_sha256}.png"
        if blobs.blob_delete(name):
            result.heatmaps_deleted += 1


def retention_apply(
    *, now: datetime | None = None, batch_size: int = BATCH_SIZE
) -> RetentionReport:
    """Delete the images past each line's retention (at most `batch_size` per line per run)."""
    now = now or timezone.now()
    report = RetentionReport()
    lines = ProductionLine.objects.filter(image_retention_days__isnull=False).order_by("code")
    for line in lines:
        result = report.lines.setdefault(
            line.code, LineRetention(code=line.code, days=line.image_retention_days)
        )
        expired = _expired(line, now)
        result.kept_in_use = expired.filter(_in_use()).count()
        for capture in expired.exclude(_in_use()).order_by("received_at")[:batch_size]:
            _delete_image(capture, result, now)
        if result.deleted_images:
            logger.info(
                "retention on %s (%s days): deleted %d images, %d bytes; %d kept in use",
                line.code,
                line.image_retention_days,
                result.deleted_images,
                result.freed_bytes,
                result.kept_in_use,
            )
    return report
