"""The labeler's queue: how valuable a task is (active learning), and which task comes next.

Disagreements (an inspector overriding the model, a shadow model disagreeing) teach the
model most, then scores near the decision boundary (uncertain), then the rest. Within one
kind, the closer the model's score is to 0.5, the sooner.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

from labeling.models import Annotation, AnnotationStatus, LabelTask, LabelTaskStatus

# Base value per source: a whole band each, so the score only orders within a band.
SOURCE_VALUE = {
    "override": 300.0,
    "shadow": 300.0,
    "uncertain": 200.0,
    "drift": 150.0,  # a window monitoring found changed: what the model may not know yet
    "audit": 100.0,
    "manual": 100.0,
    "import": 0.0,
}


def task_priority(*, source: str, model_score: float | None) -> float:
    """Higher is labeled sooner. Uncertainty 1.0 at score 0.5, 0.0 at 0 or 1."""
    base = SOURCE_VALUE.get(source, 0.0)
    if model_score is None:
        return base + 50.0  # no model output: as uncertain as it gets
    uncertainty = 1.0 - abs(float(model_score) - 0.5) * 2.0
    return base + round(100.0 * max(0.0, min(1.0, uncertainty)), 3)


def own_open_annotation(*, user: Any) -> Annotation | None:
    """Work already the labeler's: a task a reviewer sent back first, then an open draft."""
    mine = Annotation.objects.filter(
        labeler=user,
        status__in=[AnnotationStatus.REJECTED, AnnotationStatus.DRAFT],
        task__status=LabelTaskStatus.OPEN,
    ).select_related("task")
    rejected = mine.filter(status=AnnotationStatus.REJECTED).order_by("reviewed_at", "id").first()
    return rejected or mine.order_by("started_at", "id").first()


def task_queue(
    *,
    user: Any = None,
    line: str | None = None,
    source: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[LabelTask]:
    """Open tasks in the order a labeler should get them: priority (value), then oldest.

    Filters by line code, source and creation date; without the tasks this user already
    annotated (a second labeler must be someone else).
    """
    tasks = LabelTask.objects.filter(status=LabelTaskStatus.OPEN)
    if line:
        tasks = tasks.filter(line__code=line)
    if source:
        tasks = tasks.filter(source=source)
    if since is not None:
        tasks = tasks.filter(created_at__gte=since)
    if until is not None:
        tasks = tasks.filter(created_at__lt=until)
    if user is not None:
        tasks = tasks.exclude(annotations__labeler=user)
    return tasks.order_by("-priority", "created_at", "id")


def task_is_free_for(*, task: LabelTask, user: Any, now: datetime) -> bool:
    """Whether another labeler may take the task now: fewer labelers hold it (a live lease, or
    a submitted annotation) than it needs."""
    holding = (
        task.annotations.exclude(labeler=user)
        .filter(
            # Sent-back work stays its labeler's; a draft only while its lease lives.
            Q(status__in=[AnnotationStatus.SUBMITTED, AnnotationStatus.REJECTED])
            | Q(status=AnnotationStatus.DRAFT, lease_expires_at__gt=now)
        )
        .count()
    )
    return holding < task.required_annotations
