"""Writes for labeling. For now: the hook inspection calls when a capture needs a label."""

from typing import Any

from django.db import transaction

from labeling.models import LabelTask, LabelTaskStatus


@transaction.atomic
def task_create_from_inspection(*, capture: Any, reason: str) -> LabelTask:
    """Queue `capture` for labeling, with the inspector's verdict and boxes as pre-annotation.

    Idempotent per (capture, reason): calling it twice returns the first task.
    """
    decision = getattr(capture, "decision", None)
    task, _ = LabelTask.objects.get_or_create(
        capture=capture,
        source=reason,
        defaults={
            "pre_verdict": decision.verdict if decision else "",
            "pre_annotation": list(decision.regions) if decision else [],
        },
    )
    return task


@transaction.atomic
def task_withdraw_from_inspection(*, capture: Any, reasons: tuple[str, ...]) -> int:
    """An inspector undid the verdict behind these tasks: drop the ones nobody started."""
    deleted, _ = LabelTask.objects.filter(
        capture=capture, source__in=reasons, status=LabelTaskStatus.OPEN
    ).delete()
    return deleted
