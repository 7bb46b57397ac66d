"""Captures from stations: the image checked and decoded once, the models the policy needs run,
the capture routed, the image stored, and capture, predictions and decision written at once."""

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core import blobs, metrics
from core.errors import ApplicationError
from core.models import AutomationLevel, ProductionLine, Station
from core.queueing import task_send_on_commit
from inspection import events, policy, selectors
from inspection.models import AuditStatus, Capture, DecidedBy, Decision, DecisionStatus, Prediction
from labeling import services as labeling_services
from models_registry import selectors as registry_selectors
from models_registry import serving
from vision.drift import image_stats
from vision.images import ImageError, decode_image

logger = logging.getLogger(__name__)

# vision.images error codes -> (HTTP status, what the station integrator reads)
_IMAGE_ERRORS = {
    "empty": (400, "The image is empty (zero bytes)."),
    "not_image": (415, "The file is not a JPEG or PNG image."),
    "unsupported": (415, "Only JPEG and PNG images are accepted."),
    "truncated": (400, "The image is truncated or corrupt."),
    "too_large": (413, "The image has too many pixels."),
}
_FORMATS = {b"\xff\xd8\xff": "jpg", b"\x89PNG\r\n\x1a\n": "png"}


@dataclass(frozen=True)
class IngestResult:
    capture: Capture
    created: bool
    # Milliseconds per step (decode, stats, predict, store, db): the API sends them as a
    # Server-Timing header, so a benchmark sees where a station's wait goes.
    timings: dict[str, float] = field(default_factory=dict)


def image_format(data: bytes) -> str:
    if not data:
        raise ApplicationError(_IMAGE_ERRORS["empty"][1], code="empty", status=400)
    for magic, extension in _FORMATS.items():
        if data.startswith(magic):
            return extension
    raise ApplicationError(_IMAGE_ERRORS["not_image"][1], code="not_image", status=415)


def image_decode(data: bytes) -> Any:
    """Decode a stored or posted image; a bad one is a clear 4xx, never a 500."""
    try:
        return decode_image(data, max_pixels=settings.CAPTURE_MAX_PIXELS)
    except ImageError as exc:
        status, message = _IMAGE_ERRORS.get(exc.code, (400, "The image cannot be read."))
        raise ApplicationError(f"{message} ({exc})", code=exc.code, status=status) from exc


def _image_stats(image: Any) -> dict[str, float]:
    # image_stats shrinks the image itself (box average), so the stats match the references.
    return {k: round(float(v), 5) for k, v in image_stats(image).items()}


def _run_models(
    *, line: ProductionLine, capture_id: uuid.UUID, image: Any
) -> tuple[list[tuple[Any, Any, float]], list[str], policy.LineSettings, set[str]]:
    """Run the models the policy needs now.

    Returns (model, prediction, ms) for each, the serving errors, the policy's view of the line
    and the roles deployed on it.
    """
    models = registry_selectors.line_serving_models(line_id=line.id)
    canary = models.get("canary")
    line_settings = policy.LineSettings(
        automation_level=line.automation_level,
        pass_threshold=line.pass_threshold,
        fail_threshold=line.fail_threshold,
        audit_percent=line.audit_percent,
        canary_percent=canary.canary_percent if canary else 0.0,
    )
    roles = policy.roles_to_run(line_settings, capture_id, models)
    outputs, errors = [], []
    for role in roles:
        model = models[role]
        started = time.perf_counter()
        try:
            prediction = serving.predict(sha256=model.sha256, artifact=model.artifact, image=image)
        except serving.ServingError as exc:
            errors.append(f"{role}: {exc}")
            if role == "canary" and "production" in models:  # fall back to production
                roles.append("production")
            continue
        outputs.append((model, prediction, (time.perf_counter() - started) * 1000))
    return outputs, errors, line_settings, set(models)


class _Stopwatch:
    """Milliseconds per step of the capture path (sent to the station as Server-Timing)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._clock = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = (now - self._clock) * 1000
        self._clock = now


def _refuse_other_line(station: Station, line_code: str) -> None:
    if station.line.code == line_code:
        return
    if ProductionLine.objects.filter(code=line_code).exists():
        raise ApplicationError(
            f"Station {station.name} belongs to line {station.line.code}; it may not post to "
            f"{line_code}.",
            code="wrong_line",
            status=403,
        )
    raise ApplicationError(
        f"Unknown production line {line_code!r}.", code="unknown_line", status=404
    )


def _refuse_too_large(image_data: bytes) -> None:
    if len(image_data) > settings.CAPTURE_MAX_BYTES:
        raise ApplicationError(
            f"The image is {len(image_data)} bytes; the limit is {settings.CAPTURE_MAX_BYTES}.",
            code="too_large",
            status=413,
        )


def _replayed(existing: Capture, sha256: str) -> IngestResult:
    """A key sent again: the same image gets the first answer; another image is a conflict
    (the station reused a key, and answering with the first phone's verdict would be wrong)."""
    if existing.image_sha256 != sha256:
        raise ApplicationError(
            f"The idempotency key {existing.idempotency_key!r} was already used for another "
            f"image (capture {existing.id}); use a new key for a new capture.",
            code="idempotency_conflict",
            status=409,
        )
    return IngestResult(existing, created=False)


def _prediction_rows(capture: Capture, outputs: list[tuple[Any, Any, float]]) -> list[Prediction]:
    return [
        Prediction(
            capture=capture,
            model_version_id=model.model_version_id,
            role=model.role,
            score=float(prediction.score),
            verdict=prediction.verdict,
            regions=prediction.to_dict()["regions"],
            embedding=prediction.embedding_list(),
            latency_ms=round(ms, 3),
        )
        for model, prediction, ms in outputs
    ]


def capture_ingest(
    *,
    station: Station,
    line_code: str,
    idempotency_key: str,
    image_data: bytes,
    captured_at: datetime | None = None,
    metadata: dict | None = None,
) -> IngestResult:
    """Check, store, predict and route one capture from a station.

    Not one transaction as a whole on purpose: the image is checked and the model runs before
    any transaction opens, so nothing is locked during inference and a rejected request writes
    nothing. The rows are then written in one short transaction (`_capture_record`).
    """
    _refuse_other_line(station, line_code)
    sha256 = hashlib.sha256(image_data).hexdigest()
    existing = selectors.capture_for_station(station=station, idempotency_key=idempotency_key)
    if existing is not None:
        return _replayed(existing, sha256)
    _refuse_too_large(image_data)
    extension = image_format(image_data)
    watch = _Stopwatch()
    image = image_decode(image_data)
    watch.lap("decode")
    stats = _image_stats(image)
    watch.lap("stats")

    line = station.line
    capture_id = uuid.uuid4()
    outputs, errors, line_settings, deployed = _run_models(
        line=line, capture_id=capture_id, image=image
    )
    routing = policy.decide(
        line_settings,
        [policy.ModelScore(model.role, prediction.score) for model, prediction, _ in outputs],
        capture_id,
    )
    watch.lap("predict")
    relative, _ = blobs.blob_write(
        image_data, folder="captures", extension=extension, sha256=sha256
    )
    watch.lap("store")
    height, width = image.shape[:2]
    capture = Capture(
        id=capture_id,
        line=line,
        station=station,
        idempotency_key=idempotency_key,
        image=relative,
        image_sha256=sha256,
        image_bytes=len(image_data),
        image_format=extension,
        width=width,
        height=height,
        image_stats=stats,
        metadata=metadata or {},
        captured_at=captured_at,
        received_at=timezone.now(),
    )
    try:
        _capture_record(
            capture=capture,
            predictions=_prediction_rows(capture, outputs),
            routing=routing,
            errors=errors,
            shadow="shadow" in deployed and line.automation_level != AutomationLevel.MANUAL,
        )
    except IntegrityError:
        # Another request with the same idempotency key won the race: answer with its capture.
        existing = selectors.capture_for_station(station=station, idempotency_key=idempotency_key)
        if existing is None:
            raise
        return _replayed(existing, sha256)
    watch.lap("db")
    return IngestResult(capture, created=True, timings=watch.timings)


@transaction.atomic
def _capture_record(
    *,
    capture: Capture,
    predictions: list[Prediction],
    routing: policy.Routing,
    errors: list[str],
    shadow: bool,
) -> None:
    capture.save(force_insert=True)
    Prediction.objects.bulk_create(predictions)
    acting = next((p for p in predictions if p.role == routing.acting_role), None)
    decided = routing.decided_by == DecidedBy.MODEL
    decision = Decision.objects.create(
        capture=capture,
        line=capture.line,
        status=DecisionStatus.DECIDED if decided else DecisionStatus.PENDING,
        verdict=routing.verdict or "",
        decided_by=DecidedBy.MODEL if decided else "",
        decided_at=capture.received_at if decided else None,
        reason=routing.reason.value,
        detail="; ".join(errors),
        acting_prediction=acting,
        model_verdict=routing.model_verdict if acting else "",
        model_shown=routing.show_model,
        audit=routing.audit,
        # An audit sample waits in the inspectors' queue for a review (verdict_record).
        audit_status=AuditStatus.PENDING if routing.audit else "",
    )
    capture.decision = decision
    # The answer is built from these objects: no need to read back what was just written.
    capture._prefetched_objects_cache = {"predictions": predictions}
    if routing.audit:
        labeling_services.task_create_from_inspection(capture=capture, reason="audit")
    events.capture_created_on_commit(capture=capture, decision=decision)
    metrics.capture_recorded(
        line_code=capture.line.code, decision=decision, predictions=predictions
    )
    if shadow:
        # The shadow model reads the phone after the station has its answer (a worker's job).
        task_send_on_commit("inspection.capture_predict_offline", str(capture.id), "shadow")
