"""What a supervisor does about a drift, from the monitor page, each audited: open the recent
window as label tasks (the most informative captures first), start a retraining run on the
reviewed labels, or move the line down one automation level (pinning a reference lives in
monitoring.services.references)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from core.errors import ApplicationError
from core.models import AutomationLevel, ProductionLine
from inspection.models import Capture
from inspection.services import line_settings_update
from labeling import services as labeling_services
from labeling.models import LabelTaskSource
from models_registry import services as registry_services
from monitoring import selectors
from monitoring.models import MonitoringAction

MAX_TASKS = 500


def _audit(line: ProductionLine, kind: str, user: Any, **detail: Any) -> None:
    MonitoringAction.objects.create(
        line=line, kind=kind, user=user if getattr(user, "pk", None) else None, detail=detail
    )


def _informativeness(row: Any) -> float:
    """Scores near 0.5 teach the model most; captures without a score come first."""
    return 1.0 if row.score is None else 1.0 - abs(row.score - 0.5) * 2.0


@transaction.atomic
def window_label_tasks_open(
    *, line: ProductionLine, user: Any, last: int = 200, limit: int = 50
) -> list[Any]:
    """Label tasks for the `limit` most informative of the line's last `last` captures."""
    if not 1 <= limit <= MAX_TASKS or not 1 <= last <= 5000:
        raise ApplicationError(
            f"limit must be 1..{MAX_TASKS} and last 1..5000 captures.", code="invalid"
        )
    rows = sorted(selectors.recent_captures(line=line, limit=last), key=_informativeness)[::-1]
    chosen = [row.id for row in rows[:limit]]
    captures = Capture.objects.filter(pk__in=chosen).select_related("decision", "line")
    by_id = {capture.pk: capture for capture in captures.prefetch_related("predictions")}
    tasks = [
        labeling_services.task_create_from_inspection(
            capture=by_id[capture_id], reason=LabelTaskSource.DRIFT
        )
        for capture_id in chosen
        if capture_id in by_id
    ]
    _audit(line, MonitoringAction.Kind.LABEL_WINDOW, user, last=last, tasks=len(tasks))
    return tasks


@transaction.atomic
def window_retrain_start(*, line: ProductionLine, user: Any, preset: str = "") -> Any:
    """A training run on every reviewed label now (a new dataset version is frozen first)."""
    run = registry_services.training_run_start(
        user=user, data_source="reviewed_now", line=line, preset=preset
    )
    _audit(line, MonitoringAction.Kind.RETRAIN, user, training_run=run.pk)
    return run


_LOWER = {
    AutomationLevel.FULL: AutomationLevel.PARTIAL,
    AutomationLevel.PARTIAL: AutomationLevel.ASSISTED,
    AutomationLevel.ASSISTED: AutomationLevel.SHADOW,
    AutomationLevel.SHADOW: AutomationLevel.MANUAL,
}


@transaction.atomic
def line_level_lower(*, line: ProductionLine, user: Any) -> ProductionLine:
    """One level down (full -> partial -> assisted -> shadow -> manual); audited twice: as a
    line settings change and as a monitoring action."""
    lower = _LOWER.get(line.automation_level)
    if lower is None:
        raise ApplicationError(f"{line.code} is already manual.", code="already_manual", status=409)
    previous = line.automation_level
    line = line_settings_update(line=line, user=user, automation_level=lower)
    _audit(line, MonitoringAction.Kind.LOWER_LEVEL, user, old=previous, new=lower)
    return line
