"""Builders for labeling tests: captures whose images exist under MEDIA_ROOT, reviewed tasks."""

import pytest
from django.conf import settings
from django.utils import timezone

from core.blobs import blob_write
from labeling.models import Annotation, AnnotationStatus, LabelTaskStatus
from labeling.services import task_create_from_inspection
from tests.factories import CaptureFactory, DecisionFactory, UserFactory, image_bytes


def capture_with_image(*, seed: int = 0, line=None, width: int = 64, height: int = 48, **kwargs):
    relative, sha256 = blob_write(
        image_bytes(width, height, fmt="PNG", seed=seed), extension="png", folder="captures"
    )
    extra = {"station__line": line} if line is not None else {}
    return CaptureFactory(
        image=relative, image_sha256=sha256, width=width, height=height, **extra, **kwargs
    )


def decided_task(*, seed=0, line=None, reason="override", verdict="fail", regions=None):
    capture = capture_with_image(seed=seed, line=line)
    DecisionFactory(
        capture=capture,
        status="decided",
        verdict=verdict,
        decided_by="human",
        regions=regions or [],
    )
    capture.refresh_from_db()
    return task_create_from_inspection(capture=capture, reason=reason)


def accept(task, *, label="defect", regions=None, labeler=None, reviewer=None):
    """Mark a task reviewed the way the review service does (for dataset tests)."""
    annotation = Annotation.objects.create(
        task=task,
        labeler=labeler or UserFactory(roles=["labeler"]),
        status=AnnotationStatus.ACCEPTED,
        label=label,
        regions=regions or [],
        submitted_at=timezone.now(),
        reviewed_by=reviewer,
        reviewed_at=timezone.now(),
    )
    task.status = LabelTaskStatus.DONE
    task.accepted_annotation = annotation
    task.reviewed_at = annotation.reviewed_at
    task.save()
    return annotation


@pytest.fixture
def media_root():
    return settings.MEDIA_ROOT
