"""Every write of inspection: ingesting captures, recording verdicts, line settings, stations."""

import hashlib
import logging
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from config.errors import ApplicationError
from inspection import events, policy, selectors
from inspection.authentication import token_generate, token_hash
from inspection.models import (
    AUDIT_FINISHED,
    AuditStatus,
    AutomationLevel,
    Capture,
    DecidedBy,
    Decision,
    DecisionStatus,
    LineSettingsChange,
    Prediction,
    ProductionLine,
    Station,
    Verdict,
)
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


def _image_format(data: bytes) -> str:
    if not data:
        raise ApplicationError(_IMAGE_ERRORS["empty"][1], code="empty", status=400)
    for magic, extension in _FORMATS.items():
        if data.startswith(magic):
            return extension
    raise ApplicationError(_IMAGE_ERRORS["not_image"][1], code="not_image", status=415)


def _decode(data: bytes) -> Any:
    try:
        return decode_image(data, max_pixels=settings.CAPTURE_MAX_PIXELS)
    except ImageError as exc:
        status, message = _IMAGE_ERRORS.get(exc.code, (400, "The image cannot be read."))
        raise ApplicationError(f"{message} ({exc})", code=exc.code, status=status) from exc


def _image_stats(image: Any) -> dict[str, float]:
    # image_stats shrinks the image itself (box average), so the stats match the references.
    return {k: round(float(v), 5) for k, v in image_stats(image).items()}


def image_store(*, data: bytes, sha256: str, extension: str) -> str:
    """Write the original bytes at captures/<sha[:2]>/<sha>.<ext>; idempotent, atomic."""
    relative = f"captures/{sha256[:2]}/{sha256}.{extension}"
    target = Path(settings.MEDIA_ROOT) / relative
    if target.exists() and target.stat().st_size == len(data):
        return relative
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return relative


def _model_verdict(line: ProductionLine, score: float) -> str:
    if score >= line.fail_threshold:
        return "fail"
    if score < line.pass_threshold:
        return "pass"
    return "uncertain"


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
    line = station.line
    if line.code != line_code:
        if ProductionLine.objects.filter(code=line_code).exists():
            raise ApplicationError(
                f"Station {station.name} belongs to line {line.code}; it may not post to "
                f"{line_code}.",
                code="wrong_line",
                status=403,
            )
        raise ApplicationError(
            f"Unknown production line {line_code!r}.", code="unknown_line", status=404
        )
    if Capture.objects.filter(station=station, idempotency_key=idempotency_key).exists():
        existing = selectors.capture_for_station(station=station, idempotency_key=idempotency_key)
        if existing is not None:
            return IngestResult(existing, created=False)
    if len(image_data) > settings.CAPTURE_MAX_BYTES:
        raise ApplicationError(
            f"The image is {len(image_data)} bytes; the limit is {settings.CAPTURE_MAX_BYTES}.",
            code="too_large",
            status=413,
        )
    extension = _image_format(image_data)
    clock = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = (now - clock) * 1000
        clock = now

    image = _decode(image_data)
    lap("decode")
    sha256 = hashlib.sha256(image_data).hexdigest()
    stats = _image_stats(image)
    lap("stats")

    capture_id = uuid.uuid4()
    outputs, errors, line_settings, deployed = _run_models(
        line=line, capture_id=capture_id, image=image
    )
    routing = policy.decide(
        line_settings,
        [policy.ModelScore(model.role, prediction.score) for model, prediction, _ in outputs],
        capture_id,
    )
    lap("predict")
    relative = image_store(data=image_data, sha256=sha256, extension=extension)
    lap("store")
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
    predictions = [
        Prediction(
            capture=capture,
            model_version_id=model.model_version_id,
            role=model.role,
            score=float(prediction.score),
            verdict=prediction.verdict,
            regions=prediction.to_dict()["regions"],
            latency_ms=round(ms, 3),
        )
        for model, prediction, ms in outputs
    ]
    try:
        _capture_record(
            capture=capture,
            predictions=predictions,
            routing=routing,
            errors=errors,
            shadow="shadow" in deployed and line.automation_level != AutomationLevel.MANUAL,
        )
    except IntegrityError:
        # Another request with the same idempotency key won the race: answer with its capture.
        existing = selectors.capture_for_station(station=station, idempotency_key=idempotency_key)
        if existing is None:
            raise
        return IngestResult(existing, created=False)
    lap("db")
    return IngestResult(capture, created=True, timings=timings)


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
        status=DecisionStatus.DECIDED if decided else DecisionStatus.PENDING,
        verdict=routing.verdict or "",
        decided_by=DecidedBy.MODEL if decided else "",
        decided_at=capture.received_at if decided else None,
        reason=routing.reason.value,
        detail="; ".join(errors),
        acting_prediction=acting,
        model_verdict=_model_verdict(capture.line, acting.score) if acting else "",
        audit=routing.audit,
        # An audit sample waits in the inspectors' queue for a review (verdict_record).
        audit_status=AuditStatus.PENDING if routing.audit else "",
    )
    capture.decision = decision
    # The answer is built from these objects: no need to read back what was just written.
    capture._prefetched_objects_cache = {"predictions": predictions}
    if routing.audit:
        from labeling.services import task_create_from_inspection

        task_create_from_inspection(capture=capture, reason="audit")
    events.capture_created_on_commit(capture=capture, decision=decision)
    if shadow:
        from inspection.tasks import capture_predict_offline

        transaction.on_commit(
            lambda: capture_predict_offline.delay(str(capture.id), "shadow"),
        )


# How long the undo key works after a human verdict (the station already has the verdict:
# undo re-opens the capture and the station gets a correction).
UNDO_SECONDS = 10


def _pending_for_update(capture_id: Any) -> Decision:
    decision = (
        Decision.objects.select_for_update()
        .select_related("capture__line", "capture__station")
        .filter(capture_id=capture_id)
        .first()
    )
    if decision is None:
        raise ApplicationError("No such capture.", code="not_found", status=404)
    return decision


def _refuse_if_claimed_by_other(decision: Decision, user: Any, now: datetime) -> None:
    if decision.claimed_by_id != user.pk and selectors.claim_is_active(decision, now=now):
        raise ApplicationError(
            "Another inspector is judging this capture.", code="claimed", status=409
        )


def _awaits_human(decision: Decision) -> bool:
    """Pending a verdict, or a model verdict pending its audit review."""
    return decision.status == DecisionStatus.PENDING or decision.audit_status == AuditStatus.PENDING


def _refuse_if_not_open(decision: Decision) -> None:
    if decision.audit_status in AUDIT_FINISHED:
        raise ApplicationError(
            "This audit sample is already reviewed.", code="already_audited", status=409
        )
    if not _awaits_human(decision):
        raise ApplicationError(
            "This capture is already decided.", code="already_decided", status=409
        )


@transaction.atomic
def capture_claim(*, capture: Any, user: Any) -> Decision:
    """An inspector takes a pending capture (or a pending audit sample) for a lease, renewed
    while it stays open.

    Two inspectors never judge the same phone; an inspector who walks away loses the capture
    when the lease runs out (selectors.claim_lease_seconds).
    """
    decision = _pending_for_update(getattr(capture, "pk", capture))
    _refuse_if_not_open(decision)
    now = timezone.now()
    _refuse_if_claimed_by_other(decision, user, now)
    renewing = decision.claimed_by_id == user.pk and selectors.claim_is_active(decision, now=now)
    decision.claimed_by = user
    if not renewing:
        decision.claimed_at = now  # when this inspector opened it: seconds per decision
    decision.claim_expires_at = now + timedelta(seconds=selectors.claim_lease_seconds())
    decision.save(update_fields=["claimed_by", "claimed_at", "claim_expires_at"])
    if not renewing:
        events.capture_claimed_on_commit(capture=decision.capture, decision=decision)
    return decision


def decision_claim(*, capture_id: Any, user: Any) -> Decision:
    """The older name of `capture_claim`, by capture id."""
    return capture_claim(capture=capture_id, user=user)


@transaction.atomic
def capture_release(*, capture: Any, user: Any) -> Decision:
    """The inspector lets go of a capture undecided; it returns to everyone's queue."""
    decision = _pending_for_update(getattr(capture, "pk", capture))
    if _awaits_human(decision) and decision.claimed_by_id == user.pk:
        decision.claimed_by = None
        decision.claimed_at = None
        decision.claim_expires_at = None
        decision.save(update_fields=["claimed_by", "claimed_at", "claim_expires_at"])
        events.capture_released_on_commit(capture=decision.capture, decision=decision)
    return decision


def _refuse_if_undo_expired(at: datetime, now: datetime) -> None:
    if at < now - timedelta(seconds=UNDO_SECONDS):
        raise ApplicationError(
            f"Too late to undo: a verdict can be undone for {UNDO_SECONDS} seconds.",
            code="undo_expired",
            status=409,
        )


def _audit_undo(decision: Decision, user: Any) -> Decision:
    """Take back one's own audit review: the sample is pending review again, for the same
    inspector; after an override the model's verdict is back in force (another correction)."""
    if decision.audited_by_id != user.pk:
        raise ApplicationError(
            "Only the inspector who gave a verdict can undo it.", code="not_yours", status=409
        )
    now = timezone.now()
    _refuse_if_undo_expired(decision.audited_at, now)
    overridden = decision.audit_status == AuditStatus.OVERRIDDEN
    capture = decision.capture
    if overridden:
        # The model's verdict was the other one (verdicts are pass or fail), given at ingest.
        decision.verdict = Verdict.PASS if decision.verdict == Verdict.FAIL else Verdict.FAIL
        decision.decided_by = DecidedBy.MODEL
        decision.decided_by_user = None
        decision.decided_at = capture.received_at
        from labeling.services import task_withdraw_from_inspection

        task_withdraw_from_inspection(capture=capture, reasons=("override",))
    decision.audit_status = AuditStatus.PENDING
    decision.audit_verdict = ""
    decision.audited_by = None
    decision.audited_at = None
    decision.overrode_model = None
    decision.regions = []
    decision.note = ""
    decision.claimed_by = user
    decision.claim_expires_at = now + timedelta(seconds=selectors.claim_lease_seconds())
    decision.save()
    events.audit_reopened_on_commit(capture=capture, decision=decision, correction=overridden)
    return decision


@transaction.atomic
def verdict_undo(*, capture: Any, user: Any) -> Decision:
    """Take back one's own human verdict within UNDO_SECONDS.

    The station heard the verdict at once (a line does not wait on an undo window), so undo
    re-opens the capture for the same inspector and sends the station a correction; the label
    tasks the verdict created are withdrawn while still open.
    """
    decision = _pending_for_update(getattr(capture, "pk", capture))
    if decision.audit_status in AUDIT_FINISHED:
        return _audit_undo(decision, user)
    if decision.status != DecisionStatus.DECIDED or decision.decided_by != DecidedBy.HUMAN:
        raise ApplicationError(
            "Only a human verdict can be undone.", code="not_undoable", status=409
        )
    if decision.decided_by_user_id != user.pk:
        raise ApplicationError(
            "Only the inspector who gave a verdict can undo it.", code="not_yours", status=409
        )
    now = timezone.now()
    _refuse_if_undo_expired(decision.decided_at, now)
    decision.status = DecisionStatus.PENDING
    decision.verdict = ""
    decision.decided_by = ""
    decision.decided_by_user = None
    decision.decided_at = None
    decision.regions = []
    decision.note = ""
    decision.overrode_model = None
    decision.claimed_by = user
    decision.claim_expires_at = now + timedelta(seconds=selectors.claim_lease_seconds())
    decision.save()
    from labeling.services import task_withdraw_from_inspection

    task_withdraw_from_inspection(capture=decision.capture, reasons=("override", "uncertain"))
    events.decision_reverted_on_commit(capture=decision.capture, decision=decision)
    return decision


@transaction.atomic
def verdict_record(
    *,
    capture_id: Any,
    user: Any,
    verdict: str,
    regions: list[dict] | None = None,
    note: str = "",
) -> Decision:
    """A human's final verdict on a pending capture; the waiting station learns it at once.

    On a pending audit sample (the model already decided) it records the audit review instead.
    """
    if verdict not in Verdict.values:
        raise ApplicationError("verdict must be 'pass' or 'fail'.", code="invalid_verdict")
    decision = (
        Decision.objects.select_for_update()
        .select_related("capture__line", "capture__station")
        .filter(capture_id=capture_id)
        .first()
    )
    if decision is None:
        raise ApplicationError("No such capture.", code="not_found", status=404)
    _refuse_if_not_open(decision)
    _refuse_if_claimed_by_other(decision, user, timezone.now())
    if decision.audit_status == AuditStatus.PENDING:
        return _audit_record(decision, user=user, verdict=verdict, regions=regions, note=note)
    decision.status = DecisionStatus.DECIDED
    decision.verdict = verdict
    decision.decided_by = DecidedBy.HUMAN
    decision.decided_by_user = user
    decision.decided_at = timezone.now()
    decision.regions = regions or []
    decision.note = note
    if decision.model_verdict in (Verdict.PASS, Verdict.FAIL):
        decision.overrode_model = decision.model_verdict != verdict
    decision.save()

    from labeling.services import task_create_from_inspection

    capture = decision.capture
    capture.decision = decision
    if decision.overrode_model:
        task_create_from_inspection(capture=capture, reason="override")
    elif decision.reason == policy.Reason.UNCERTAIN:
        task_create_from_inspection(capture=capture, reason="uncertain")
    from labeling.services import task_create_if_shadow_disagrees

    task_create_if_shadow_disagrees(capture=capture)
    events.decision_made_on_commit(decision=decision, capture=capture)
    return decision


def _audit_record(
    decision: Decision, *, user: Any, verdict: str, regions: list[dict] | None, note: str
) -> Decision:
    """An inspector's review of a model decision in `full`: agreeing confirms it; disagreeing
    overrides it. The station acted on the model's verdict long ago, so an override puts the
    inspector's verdict in force and sends the station a `correction` (as an undo does), and
    the capture goes to labeling with the inspector's boxes."""
    now = timezone.now()
    overridden = verdict != decision.verdict
    decision.audit_status = AuditStatus.OVERRIDDEN if overridden else AuditStatus.CONFIRMED
    decision.audit_verdict = verdict
    decision.audited_by = user
    decision.audited_at = now
    decision.overrode_model = overridden
    decision.regions = regions or []
    decision.note = note
    if overridden:
        decision.verdict = verdict
        decision.decided_by = DecidedBy.HUMAN
        decision.decided_by_user = user
        decision.decided_at = now
    decision.save()
    capture = decision.capture
    capture.decision = decision
    if overridden:
        from labeling.services import task_create_from_inspection

        task_create_from_inspection(capture=capture, reason="override")
    events.audit_recorded_on_commit(capture=capture, decision=decision)
    return decision


_LINE_FIELDS = (
    "name",
    "automation_level",
    "pass_threshold",
    "fail_threshold",
    "audit_percent",
    "min_shadow_captures",
    "min_agreement_percent",
)
_LEVEL_ORDER = list(AutomationLevel.values)  # manual < shadow < assisted < partial < full


def _check_guard_rail(line: ProductionLine, level: str) -> None:
    """Raising a line to a level where the model decides needs the guard rail to hold.

    Checked against the rail as it stood before this change, so one request cannot lower the
    bar and raise the level at once.
    """
    if level not in selectors.MODEL_DECIDING_LEVELS:
        return
    if _LEVEL_ORDER.index(level) <= _LEVEL_ORDER.index(line.automation_level):
        return
    rail = selectors.line_guard_rail(line=line)
    if not rail.ok:
        raise ApplicationError(
            f"Refused: {line.code} cannot move to {level} yet. {rail.rule} Now: {rail.status}.",
            code="guard_rail",
            status=409,
            extra={"guard_rail": {"rule": rail.rule, "status": rail.status}},
        )


@transaction.atomic
def line_settings_update(*, line: ProductionLine, user: Any, **changes: Any) -> ProductionLine:
    """Change a line's settings; every change is recorded (who, when, old and new values)."""
    line = ProductionLine.objects.select_for_update().get(pk=line.pk)
    unknown = set(changes) - set(_LINE_FIELDS)
    if unknown:
        raise ApplicationError(f"Cannot change {', '.join(sorted(unknown))}.")
    if "automation_level" in changes and changes["automation_level"] not in AutomationLevel.values:
        raise ApplicationError(
            f"automation_level must be one of {', '.join(AutomationLevel.values)}.",
            code="invalid_level",
        )
    pass_threshold = changes.get("pass_threshold", line.pass_threshold)
    fail_threshold = changes.get("fail_threshold", line.fail_threshold)
    if not 0 <= pass_threshold <= fail_threshold <= 1:
        raise ApplicationError(
            "Thresholds must satisfy 0 <= pass_threshold <= fail_threshold <= 1.",
            code="invalid_thresholds",
        )
    if not 0 <= changes.get("audit_percent", line.audit_percent) <= 100:
        raise ApplicationError("audit_percent must be between 0 and 100.", code="invalid_percent")
    if not 0 <= changes.get("min_agreement_percent", line.min_agreement_percent) <= 100:
        raise ApplicationError(
            "min_agreement_percent must be between 0 and 100.", code="invalid_percent"
        )
    if changes.get("min_shadow_captures", 0) < 0:
        raise ApplicationError("min_shadow_captures cannot be negative.", code="invalid_count")
    if "automation_level" in changes:
        _check_guard_rail(line, changes["automation_level"])
    diff = {
        name: {"old": getattr(line, name), "new": value}
        for name, value in changes.items()
        if getattr(line, name) != value
    }
    if not diff:
        return line
    for name, value in changes.items():
        setattr(line, name, value)
    line.save()
    LineSettingsChange.objects.create(
        line=line, changed_by=user if getattr(user, "pk", None) else None, changes=diff
    )
    events.line_changed_on_commit(line=line, changes=diff)
    return line


@transaction.atomic
def line_create(
    *, code: str, name: str, automation_level: str = AutomationLevel.MANUAL, **settings_: Any
) -> ProductionLine:
    if ProductionLine.objects.filter(code=code).exists():
        raise ApplicationError(f"Line {code} already exists.", code="exists", status=409)
    return ProductionLine.objects.create(
        code=code, name=name, automation_level=automation_level, **settings_
    )


@dataclass(frozen=True)
class NewStation:
    station: Station
    token: str  # shown once; only its hash is stored


@transaction.atomic
def station_create(*, line: ProductionLine, name: str) -> NewStation:
    if Station.objects.filter(line=line, name=name).exists():
        raise ApplicationError(
            f"Line {line.code} already has a station named {name}.", code="exists", status=409
        )
    token = token_generate()
    station = Station.objects.create(
        line=line, name=name, token_hash=token_hash(token), token_prefix=token[:8]
    )
    return NewStation(station, token)


@transaction.atomic
def station_token_rotate(*, station: Station) -> NewStation:
    token = token_generate()
    station.token_hash = token_hash(token)
    station.token_prefix = token[:8]
    station.save(update_fields=["token_hash", "token_prefix"])
    return NewStation(station, token)


def prediction_record_offline(*, capture_id: Any, role: str) -> Prediction | None:
    """Run a deployed model that does not act (shadow) on a stored capture. Idempotent.

    Not atomic as a whole: the model runs outside any transaction (SQLite would hold its write
    lock, and the web requests would wait, while a model loads or predicts).
    """
    existing = Prediction.objects.filter(capture_id=capture_id, role=role).first()
    if existing:
        return existing
    capture = Capture.objects.select_related("line").filter(pk=capture_id).first()
    if capture is None:
        return None
    model = registry_selectors.line_serving_models(line_id=capture.line_id).get(role)
    if model is None:
        return None
    data = (Path(settings.MEDIA_ROOT) / capture.image).read_bytes()
    image = _decode(data)
    started = time.perf_counter()
    prediction = serving.predict(sha256=model.sha256, artifact=model.artifact, image=image)
    ms = (time.perf_counter() - started) * 1000
    with transaction.atomic():
        row, _ = Prediction.objects.get_or_create(
            capture=capture,
            role=role,
            defaults={
                "model_version_id": model.model_version_id,
                "score": float(prediction.score),
                "verdict": prediction.verdict,
                "regions": prediction.to_dict()["regions"],
                "latency_ms": round(ms, 3),
            },
        )
        if role == "shadow":
            # The shadow may read the phone after the human decided: a disagreement is a lesson.
            from labeling.services import task_create_if_shadow_disagrees

            task_create_if_shadow_disagrees(capture=capture)
    return row


def capture_heatmap_png(*, capture: Capture) -> Path:
    """The acting model's heatmap over the capture, as a PNG file (computed once, then cached).

    Heatmaps are not stored at capture time (the station's path stays short and most are never
    looked at); the first inspector to toggle it pays one inference, cached on disk by image
    and model, so every web process and every later view reads the file.
    """
    decision = capture.decision
    prediction = next(
        (p for p in capture.predictions.all() if p.pk == decision.acting_prediction_id), None
    )
    if prediction is None:
        raise ApplicationError(
            "This capture has no model output to show.", code="no_heatmap", status=404
        )
    model = prediction.model_version
    target = (
        Path(settings.MEDIA_ROOT) / "heatmaps" / model.sha256[:2] / f"{model.sha256[:16]}-"
        f"{capture.image_sha256}.png"
    )
    if target.exists():
        return target
    try:
        image = _decode((Path(settings.MEDIA_ROOT) / capture.image).read_bytes())
        output = serving.predict(sha256=model.sha256, artifact=model.artifact, image=image)
        png = output.heatmap_png(image)
    except (OSError, ApplicationError, serving.ServingError, AttributeError) as exc:
        logger.warning("no heatmap for capture %s: %s", capture.pk, exc)
        raise ApplicationError(
            "The heatmap cannot be computed for this capture.", code="no_heatmap", status=404
        ) from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
    with os.fdopen(handle, "wb") as stream:
        stream.write(png)
    os.replace(temporary, target)
    return target
