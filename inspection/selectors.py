"""Reads for inspection: captures with their decision, lists with filters, line settings."""

from datetime import datetime
from typing import Any

from django.db.models import Prefetch, QuerySet

from config.errors import ApplicationError
from inspection.models import Capture, LineSettingsChange, Prediction, ProductionLine, Station
from models_registry.models import Deployment


def line_get(*, code: str) -> ProductionLine:
    line = ProductionLine.objects.filter(code=code).first()
    if line is None:
        raise ApplicationError(
            f"Unknown production line {code!r}.", code="unknown_line", status=404
        )
    return line


def line_list() -> QuerySet[ProductionLine]:
    return ProductionLine.objects.prefetch_related(
        Prefetch("deployments", queryset=Deployment.objects.select_related("model_version"))
    )


def line_changes(*, line: ProductionLine) -> QuerySet[LineSettingsChange]:
    return line.changes.select_related("changed_by")


def _capture_queryset() -> QuerySet[Capture]:
    return Capture.objects.select_related("line", "station", "decision").prefetch_related(
        Prefetch("predictions", queryset=Prediction.objects.select_related("model_version"))
    )


def capture_get(*, capture_id: Any) -> Capture:
    capture = _capture_queryset().filter(pk=capture_id).first()
    if capture is None:
        raise ApplicationError("No such capture.", code="not_found", status=404)
    return capture


def capture_for_station(*, station: Station, idempotency_key: str) -> Capture | None:
    return _capture_queryset().filter(station=station, idempotency_key=idempotency_key).first()


def capture_list(
    *,
    line: str | None = None,
    station_id: int | None = None,
    status: str | None = None,
    verdict: str | None = None,
    received_after: datetime | None = None,
    received_before: datetime | None = None,
) -> QuerySet[Capture]:
    captures = _capture_queryset()
    if line:
        captures = captures.filter(line__code=line)
    if station_id:
        captures = captures.filter(station_id=station_id)
    if status:
        captures = captures.filter(decision__status=status)
    if verdict:
        captures = captures.filter(decision__verdict=verdict)
    if received_after:
        captures = captures.filter(received_at__gte=received_after)
    if received_before:
        captures = captures.filter(received_at__lt=received_before)
    return captures.order_by("-received_at")


def capture_decision_status(*, capture_id: Any) -> str | None:
    """Just the decision status: the cheap read a waiting station repeats."""
    return Capture.objects.filter(pk=capture_id).values_list("decision__status", flat=True).first()
