"""Label tasks: created from inspections (overrides, uncertain, audit, shadow disagreements)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from labeling.models import LabelTask, LabelTaskSource, LabelTaskStatus
from labeling.queue import task_priority
from labeling.regions import pre_annotation_from_inspection


def _capture_group(capture: Any) -> str:
    # Two photos of one phone (a retake) share its serial number: they must share a split.
    metadata = getattr(capture, "metadata", None) or {}
    for key in ("serial", "serial_number", "imei"):
        if metadata.get(key):
            return f"serial:{metadata[key]}"[:200]
    return f"capture:{capture.pk}"


def _model_output(capture: Any, reason: str) -> tuple[list[dict], float | None]:
    """The regions and score the labeler should see (the acting model's, or the shadow's for a
    shadow disagreement)."""
    predictions = list(capture.predictions.all())
    decision = getattr(capture, "decision", None)
    chosen = None
    if reason == "shadow":
        chosen = next((p for p in predictions if p.role == "shadow"), None)
    if chosen is None and decision is not None and decision.acting_prediction_id:
        chosen = next((p for p in predictions if p.pk == decision.acting_prediction_id), None)
    if chosen is None and predictions:
        chosen = predictions[0]
    if chosen is None:
        return [], None
    return pre_annotation_from_inspection(chosen.regions or []), float(chosen.score)


@transaction.atomic
def task_create_from_inspection(*, capture: Any, reason: str) -> LabelTask:
    """Queue `capture` for labeling, with the inspector's verdict and boxes as pre-annotation
    and the model's regions beside them.

    Idempotent per (capture, reason): calling it twice returns the first task.
    """
    decision = getattr(capture, "decision", None)
    existing = LabelTask.objects.filter(capture=capture, source=reason).first()
    if existing is not None:
        return existing
    model_regions, score = _model_output(capture, reason)
    task, _ = LabelTask.objects.get_or_create(
        capture=capture,
        source=reason,
        defaults={
            "line_id": capture.line_id,
            "image": capture.image,
            "width": capture.width,
            "height": capture.height,
            "group": _capture_group(capture),
            "pre_verdict": decision.verdict if decision else "",
            "pre_annotation": list(decision.regions) if decision else [],
            "model_regions": model_regions,
            "model_score": score,
            "priority": task_priority(source=reason, model_score=score),
        },
    )
    return task


@transaction.atomic
def task_withdraw_from_inspection(*, capture: Any, reasons: tuple[str, ...]) -> int:
    """An inspector undid the verdict behind these tasks: drop the ones nobody started."""
    deleted, _ = LabelTask.objects.filter(
        capture=capture, source__in=reasons, status=LabelTaskStatus.OPEN, annotations__isnull=True
    ).delete()
    return deleted


@transaction.atomic
def task_create_if_shadow_disagrees(*, capture: Any) -> LabelTask | None:
    """A shadow model read the capture differently from the final verdict: a lesson.

    Called when the verdict is recorded and when a shadow prediction arrives (either may come
    first); only confident shadow verdicts (pass/fail) count.
    """
    decision = getattr(capture, "decision", None)
    if decision is None or decision.status != "decided" or not decision.verdict:
        return None
    shadow = next((p for p in capture.predictions.all() if p.role == "shadow"), None)
    if shadow is None or shadow.verdict not in ("pass", "fail"):
        return None
    if shadow.verdict == decision.verdict:
        return None
    return task_create_from_inspection(capture=capture, reason=LabelTaskSource.SHADOW)
