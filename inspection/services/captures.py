"""Captures from stations: the image checked and decoded once, the models the policy needs run,
the capture routed, the image stored, and capture, predictions and decision written at once.
A capture the station's edge model decided during an outage comes with that decision: it is
recorded as made at the edge, not decided again."""

import functools
import hashlib
import itertools
import logging
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from core import blobs, metrics
from core.errors import ApplicationError
from core.models import AutomationLevel, ProductionLine, Station, Verdict
from core.queueing import task_send_on_commit
from inspection import events, policy, selectors
from inspection.models import AuditStatus, Capture, DecidedBy, Decision, DecisionStatus, Prediction
from labeling import services as labeling_services
from models_registry import selectors as registry_selectors
from models_registry import serving
from models_registry.models import ModelVersion
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
# How far ahead of the server's clock a station's edge decision may be stamped (clock drift).
EDGE_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class EdgeDecision:
    """The verdict a station's edge model gave while the server could not be reached: which
    model version (and ONNX file) it ran, its score, and when, by the station's clock."""

    verdict: str
    model_version_id: int
    decided_at: datetime
    score: float | None = None
    model_sha256: str = ""


def _edge_decision_stored(decision: Decision) -> EdgeDecision | None:
    if not decision.edge_verdict:
        return None
    return EdgeDecision(
        verdict=decision.edge_verdict,
        model_version_id=decision.edge_model_version_id,
        decided_at=decision.edge_decided_at,
        score=decision.edge_score,
        model_sha256=decision.edge_model_sha256,
    )


def _edge_model_version(edge: EdgeDecision) -> ModelVersion:
    """The registry version the edge decision names, after its rules: a pass/fail verdict, not
    stamped in the future (beyond a few minutes of clock drift), a known version, and (when
    given) the sha256 of that version's ONNX export or artifact."""
    if edge.verdict not in Verdict.values:
        raise ApplicationError(
            f"edge_decision.verdict must be 'pass' or 'fail', not {edge.verdict!r}.",
            code="invalid_edge_decision",
        )
    now = timezone.now()
    if edge.decided_at > now + EDGE_CLOCK_SKEW:
        raise ApplicationError(
            f"edge_decision.decided_at ({edge.decided_at.isoformat()}) is in the future (the "
            f"server's time is {now.isoformat()}); check the station's clock.",
            code="invalid_edge_decision",
        )
    version = ModelVersion.objects.filter(pk=edge.model_version_id).first()
    if version is None:
        raise ApplicationError(
            f"edge_decision.model_version {edge.model_version_id} is not a model version in "
            "the registry (send the X-Model-Version the server gave with the edge model).",
            code="unknown_model_version",
        )
    known = {version.sha256, (version.edge_export or {}).get("sha256")}
    if edge.model_sha256 and edge.model_sha256 not in known:
        raise ApplicationError(
            f"edge_decision.model_sha256 is not the sha256 of {version.label}'s edge model "
            "(send the X-Model-Sha256 the server gave with it).",
            code="invalid_edge_decision",
        )
    return version


@dataclass(frozen=True)
class IngestResult:
    capture: Capture
    created: bool
    # Milliseconds per step (decode, stats, predict, db): the API sends them as a
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


_beside_threads: ThreadPoolExecutor | None = None
_beside_lock = threading.Lock()


def _beside_model_pool() -> ThreadPoolExecutor:
    """Threads for the work done beside the request's own thread: two per capture the web
    process serves at once (its image's statistics and its file).
    Made on first use: settings are never read at import."""
    global _beside_threads
    with _beside_lock:
        if _beside_threads is None:
            _beside_threads = ThreadPoolExecutor(
                2 * max(1, settings.CAPTURE_THREADS), thread_name_prefix="capture-beside"
            )
        return _beside_threads


class EarlyDecode:
    """A posted image's decoding, done before its request reaches the view: `run` on the
    event loop (core/asgi_threads.py) while the request's thread authenticates the station and
    parses the form on the other core (~1.2 ms against ~1.6 ms for a 1024x576 JPEG; the
    station waited for both in turn). `capture_ingest` takes its result only for the very
    bytes the form gave it, waiting for `run` to finish."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.future: Future = Future()

    def run(self) -> None:
        """Decode, in the calling thread; `image_for` waits for it."""
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            image = image_decode(self.data)
        except BaseException as exc:
            self.future.set_exception(exc)
        else:
            self.future.set_result(image)

    def image_for(self, data: bytes) -> Any | None:
        """The decoded image (or the error decoding raised) if `data` are the bytes this
        decoding started with; None (and the decoding dropped) otherwise."""
        if data != self.data:
            self.future.cancel()
            return None
        return self.future.result()


def _image_stats(image: Any) -> dict[str, float]:
    # image_stats shrinks the image itself (box average), so the stats match the references.
    return {k: round(float(v), 5) for k, v in image_stats(image).items()}


def _run_models(
    *, line: ProductionLine, capture_id: uuid.UUID, image: Any, edge: bool = False
) -> tuple[list[tuple[Any, Any, float]], list[str], policy.LineSettings, set[str]]:
    """Run the models the policy needs now (with `edge`, production's reading for the record).

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
        edge_audit_percent=line.edge_audit_percent,
    )
    roles = policy.roles_to_run(line_settings, capture_id, models, edge=edge)
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


def _replayed(existing: Capture, sha256: str, edge: EdgeDecision | None = None) -> IngestResult:
    """A key sent again: the same image gets the first answer; another image is a conflict
    (the station reused a key, and answering with the first phone's verdict would be wrong).

    The same goes for an edge decision: the first one recorded stands, and another one under
    the same key is a conflict. A capture first received without one keeps its first answer
    when it comes again with one (the server had it and decided it; its answer was lost on the
    way back, the station then decided at the edge): the station reports a verdict other than
    its own as a correction."""
    if existing.image_sha256 != sha256:
        raise ApplicationError(
            f"The idempotency key {existing.idempotency_key!r} was already used for another "
            f"image (capture {existing.id}); use a new key for a new capture.",
            code="idempotency_conflict",
            status=409,
        )
    stored = _edge_decision_stored(existing.decision)
    if stored is not None and stored != edge:
        raise ApplicationError(
            f"The idempotency key {existing.idempotency_key!r} was already used with another "
            f"edge decision (capture {existing.id}: {stored.verdict} by model version "
            f"{stored.model_version_id} at {stored.decided_at.isoformat()}).",
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
    edge_decision: EdgeDecision | None = None,
    early: EarlyDecode | None = None,
) -> IngestResult:
    """Check, store, predict and route one capture from a station. `early`: the image's
    decoding, started as the request came in (used only if it started from `image_data`).

    With `edge_decision` (the station's edge model decided it during an outage) the verdict
    stands: it is recorded as made at the edge, production's reading is stored beside it, and
    a share of such decisions (the line's `edge_audit_percent`) goes to the audit queue.

    Not one transaction as a whole on purpose: the image is checked before anything is
    written, nothing is locked during inference, and the image's file is written beside the
    model. The rows follow in one statement (`_capture_record`) once the file is there; a
    request refused after the file was written (busy, a key reused for another image, the
    database down) deletes it again unless a capture names it.

    A key sent again is found by the unique constraint on (station, key) when the rows go in,
    and answered with the first capture (`_replayed`). It is not looked up beforehand: that
    lookup cost every capture 1-1.5 ms of the station's wait, to spare the model for a replay
    (an answer lost on the way back), which is rare; a retry that races its original, the
    common replay under load, found nothing then either.
    """
    _refuse_other_line(station, line_code)
    if edge_decision is not None:
        _edge_model_version(edge_decision)
    _refuse_too_large(image_data)
    extension = image_format(image_data)
    sha256 = hashlib.sha256(image_data).hexdigest()
    watch = _Stopwatch()
    image = early.image_for(image_data) if early is not None else None
    if image is None:
        image = image_decode(image_data)
    watch.lap("decode")  # or the wait for the early decoding
    relative = blobs.content_name(sha256, folder="captures", extension=extension)
    # Beside the model (numpy, Pillow, torch and file writes let go of the GIL), so the station
    # does not wait for them on a machine with a core to spare: the drift statistics, and the
    # image's file (on object storage a HEAD and a PUT, 12 ms against moto on loopback).
    beside = _beside_model_pool()
    stats_pending = beside.submit(_image_stats, image)
    stored = beside.submit(blobs.blob_write_at, relative, image_data)
    try:
        line = station.line
        capture_id = uuid.uuid4()
        outputs, errors, line_settings, deployed = _run_models(
            line=line, capture_id=capture_id, image=image, edge=edge_decision is not None
        )
        if edge_decision is not None:
            routing = policy.edge_decided(line_settings, edge_decision.verdict, capture_id)
        else:
            scores = [policy.ModelScore(model.role, p.score) for model, p, _ in outputs]
            routing = policy.decide(line_settings, scores, capture_id)
        watch.lap("predict")
        stats = stats_pending.result()
        stored.result()  # before any row names the file (a store that is down: 503, no rows)
        watch.lap("beside")  # the wait for them, if the model was quicker
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
                edge=edge_decision,
            )
        except IntegrityError:
            # The key was used before, or by a request that won the race: its capture answers.
            existing = selectors.capture_for_station(
                station=station, idempotency_key=idempotency_key
            )
            if existing is None:
                raise
            return _replayed(existing, sha256, edge_decision)
    except BaseException:
        # Refused (busy, a key reused for another image) or the database failed: the file this
        # request wrote goes, unless a capture names it (the replay of the same image does).
        _image_forget(stored, capture_image=relative, sha256=sha256)
        raise
    watch.lap("db")  # the rows
    return IngestResult(capture, created=True, timings=watch.timings)


def _capture_record(
    *,
    capture: Capture,
    predictions: list[Prediction],
    routing: policy.Routing,
    errors: list[str],
    shadow: bool,
    edge: EdgeDecision | None = None,
) -> None:
    acting = next((p for p in predictions if p.role == routing.acting_role), None)
    decided = routing.decided_by in (DecidedBy.MODEL, DecidedBy.EDGE)
    decided_at = capture.received_at if decided else None
    if edge is not None:
        decided_at = edge.decided_at  # when the phone got its verdict, by the station's clock
    decision = Decision(
        capture=capture,
        line=capture.line,
        status=DecisionStatus.DECIDED if decided else DecisionStatus.PENDING,
        verdict=routing.verdict or "",
        decided_by=routing.decided_by if decided else "",
        decided_at=decided_at,
        reason=routing.reason.value,
        detail="; ".join(errors),
        acting_prediction=acting,
        model_verdict=routing.model_verdict if acting else "",
        model_shown=routing.show_model,
        audit=routing.audit,
        # An audit sample waits in the inspectors' queue for a review (verdict_record).
        audit_status=AuditStatus.PENDING if routing.audit else "",
        edge_verdict=edge.verdict if edge else "",
        edge_score=edge.score if edge else None,
        edge_model_version_id=edge.model_version_id if edge else None,
        edge_model_sha256=edge.model_sha256 if edge else "",
        edge_decided_at=edge.decided_at if edge else None,
    )
    # The rows in one statement, which commits on its own: a BEGIN and a COMMIT would be two
    # more round trips on the station's wait (~0.6 ms). An audit sample's label task goes in
    # with them, in a transaction; inside a caller's transaction (a test's) they take a
    # savepoint. A key used before fails the statement (IntegrityError) and writes nothing.
    with _rows_transaction(needed=routing.audit):
        capture_rows_insert(capture=capture, predictions=predictions, decision=decision)
        if routing.audit:
            labeling_services.task_create_from_inspection(capture=capture, reason="audit")
    capture.decision = decision
    # The answer is built from these objects: no need to read back what was just written.
    capture._prefetched_objects_cache = {"predictions": predictions}
    # Sent now, or when a caller's transaction commits.
    events.capture_created_on_commit(capture=capture, decision=decision)
    metrics.capture_recorded(
        line_code=capture.line.code, decision=decision, predictions=predictions
    )
    if shadow:
        # The shadow model reads the phone after the station has its answer (a worker's job).
        task_send_on_commit("inspection.capture_predict_offline", str(capture.id), "shadow")


def _rows_transaction(*, needed: bool) -> Any:
    """A transaction (or a savepoint in a caller's) when `needed` or already in one; else none,
    for a single statement that commits on its own."""
    if needed or connection.in_atomic_block:
        return transaction.atomic()
    return nullcontext()


def _image_forget(stored: Future, *, capture_image: str, sha256: str) -> None:
    """Delete the file a capture wrote beside the model when its rows did not go in, unless a
    capture names it. At worst (the database is down) the file stays: a station's retry writes
    the same name."""
    if stored.exception() is not None:  # waits for the write: it never lands after this
        return  # nothing was written
    try:
        if not Capture.objects.filter(image_sha256=sha256).exists():
            blobs.blob_delete(capture_image)
    except Exception:
        logger.warning("kept the file %s of a capture not recorded", capture_image, exc_info=True)


def capture_rows_insert(
    *, capture: Capture, predictions: list[Prediction], decision: Decision
) -> None:
    """Write a new capture, its predictions and its decision, and give them their ids.

    On PostgreSQL in one statement: the capture, predictions and decision inserted by
    data-modifying CTEs, the decision pointing at its acting prediction by role. Through the
    ORM that was three INSERTs and their round trips: 1.9 ms of the web process's CPU and
    3.4 ms of wall time a capture, against 0.4 and 1.3 ms. The columns and values are the
    ORM's own (every concrete field, prepared as `save()` prepares it), so a new field needs
    nothing here. Elsewhere (SQLite, the demo's default) the ORM writes them one by one, in a
    transaction. A key used before fails it with IntegrityError, and nothing is written.
    """
    if connection.vendor != "postgresql":
        _capture_rows_insert_orm(capture=capture, predictions=predictions, decision=decision)
        return
    acting = decision.acting_prediction.role if decision.acting_prediction else None
    params: list[Any] = []
    for instance in (capture, *predictions, decision):
        for model_field in _insert_fields(type(instance)):
            if model_field.attname == "acting_prediction_id" and acting is not None:
                params.append(acting)  # the subquery's role
                continue
            value = model_field.pre_save(instance, add=True)
            params.append(model_field.get_db_prep_save(value, connection))
    # One statement: it commits on its own, or fails as a whole (a duplicate key:
    # IntegrityError), also as part of a caller's transaction.
    with _raw_cursor() as cursor:
        cursor.execute(_rows_sql(len(predictions), acting=acting is not None), params)
        decision_id, ids_by_role = cursor.fetchone()
    for prediction in predictions:
        prediction.id = ids_by_role[prediction.role]
    decision.id = decision_id
    if decision.acting_prediction is not None:
        decision.acting_prediction_id = decision.acting_prediction.id
    for instance in (capture, *predictions, decision):
        instance._state.adding, instance._state.db = False, connection.alias


@functools.cache
def _rows_sql(predictions: int, *, acting: bool) -> str:
    """The rows' statement for a capture with `predictions` predictions, one of them acting or
    none, with PostgreSQL's own placeholders ($1, $2, ...) in the order `capture_rows_insert`
    gives its parameters. Made once per shape: its text, the same from capture to capture, is
    what psycopg prepares on a connection."""
    quote = connection.ops.quote_name
    number = itertools.count(1)

    def row(model: type, *, acting_role: bool = False) -> str:
        placeholders = []
        for model_field in _insert_fields(model):
            if model_field.attname == "acting_prediction_id" and acting_role:
                placeholders.append(
                    f"(SELECT {quote('id')} FROM prediction WHERE role = ${next(number)})"
                )
            else:
                placeholders.append(f"${next(number)}")
        return f"({', '.join(placeholders)})"

    def insert(model: type, rows: list[str]) -> str:
        columns = ", ".join(quote(field.column) for field in _insert_fields(model))
        return f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES {', '.join(rows)}"

    parts = [f"capture AS ({insert(Capture, [row(Capture)])})"]
    if predictions:
        rows = [row(Prediction) for _ in range(predictions)]
        parts.append(f"prediction AS ({insert(Prediction, rows)} RETURNING {quote('id')}, role)")
    parts.append(
        f"decision AS ({insert(Decision, [row(Decision, acting_role=acting)])} "
        f"RETURNING {quote('id')})"
    )
    prediction_ids = "(SELECT json_object_agg(role, id) FROM prediction)" if predictions else "NULL"
    return f"WITH {', '.join(parts)} SELECT (SELECT id FROM decision), {prediction_ids}"


def _raw_cursor() -> Any:
    """A cursor that sends the parameters apart from the statement's text, where Django's binds
    them into it, and takes the text with PostgreSQL's own placeholders ($1), where psycopg's
    other cursors rewrite each %s at every run (not cached past 50 parameters: ~0.12 ms of the
    station's wait). The text stays the same from capture to capture, so psycopg prepares it
    on a connection after a few runs (`prepare_threshold`, config/settings.py) and PostgreSQL
    stops parsing and planning it (~0.5 ms). Wrapped as Django wraps its own: errors become
    Django's (IntegrityError), and the query is logged with DEBUG."""
    connection.ensure_connection()
    cursor = _raw_cursor_class()(connection.connection)
    if connection.queries_logged:
        return connection.make_debug_cursor(cursor)
    return connection.make_cursor(cursor)


@functools.cache
def _raw_cursor_class() -> type:
    import psycopg
    from django.db.backends.postgresql.base import CursorMixin

    return type("RawCursor", (CursorMixin, psycopg.RawCursor), {})


@transaction.atomic
def _capture_rows_insert_orm(
    *, capture: Capture, predictions: list[Prediction], decision: Decision
) -> None:
    capture.save(force_insert=True)
    Prediction.objects.bulk_create(predictions)
    decision.save(force_insert=True)  # takes the acting prediction's id, known now


@functools.cache
def _insert_fields(model: type) -> list[Any]:
    """The fields an INSERT of `model` sets: every concrete one but an auto-incremented id."""
    return [
        field
        for field in model._meta.concrete_fields
        if not (field.primary_key and field.get_internal_type().endswith("AutoField"))
    ]
