"""`python manage.py seed_scale --captures N [--lines K]`: bulk-load synthetic traffic for scale
benchmarks: lines at different automation levels with stations, assigned inspectors and a model
in production, and N captures spread over days and shift hours with the predictions, decisions
(the model's and the inspectors', a few hundred a line still pending, audit samples) and label
tasks the capture path and the inspectors would have left (bench/scale.py reads them).

Rows are routed by `inspection.policy.decide` itself, so a decision always agrees with its
prediction and its line's level. Images are a handful of real small JPEGs stored once through
the blob store; every capture points at one of them. On PostgreSQL the rows go in with COPY
(batches of --batch captures, one transaction each), elsewhere with bulk_create. Each run adds
to what is there: lines, stations, users and models are made once and reused.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, models, transaction

from core import blobs
from core.authentication import token_generate, token_hash
from core.models import AutomationLevel, ProductionLine, Station
from core.roles import Role
from inspection import policy
from inspection.choices import DecisionReason
from inspection.models import AuditStatus, Capture, Decision, DecisionStatus, Prediction
from labeling.models import Annotation, AnnotationStatus, LabelTask, LabelTaskStatus
from labeling.queue import task_priority
from labeling.regions import pre_annotation_from_inspection
from models_registry.models import (
    Deployment,
    ModelStatus,
    ModelVersion,
    RolloutAction,
    RolloutEvent,
)
from vision.drift import image_stats
from vision.images import encode_jpeg
from vision.synth.phones import synth_phone

# The levels lines get, in turn: the model deciding on the first ones, humans on the later.
LEVELS = [
    AutomationLevel.PARTIAL,
    AutomationLevel.FULL,
    AutomationLevel.ASSISTED,
    AutomationLevel.SHADOW,
    AutomationLevel.MANUAL,
]
STATIONS_PER_LINE = 3
INSPECTORS_PER_LINE = 2
LABELERS = 2
IMAGE_SIZE = (320, 180)  # (W, H): small real JPEGs, a few KB each
IMAGES_PER_KIND = 4  # ok phones and defective ones
DEFECT_RATE = 0.06
INSPECTOR_ERROR = 0.01  # an inspector's verdict goes against the truth this often
EMBEDDING_DIMS = 32
REFERENCE_SIZE = 300  # training images whose statistics the model carries (monitoring)
SHADOW_DAYS = 3  # the shadow model on the first line has run for the last days
LABELED_AFTER_DAYS = 3  # label tasks older than this were labeled and accepted
# Captures per hour of day, relative: two shifts (06-22 h), a thin night shift.
HOUR_PROFILE = [0.15] * 6 + [1.0] * 16 + [0.15] * 2
PASS_THRESHOLD, FAIL_THRESHOLD = 0.3, 0.7


@dataclass
class Image:
    name: str
    sha256: str
    size: int
    width: int
    height: int
    defect: bool
    stats: dict[str, float]
    embedding: np.ndarray
    model_regions: list[dict]  # the model's regions on it (image pixels)
    inspector_regions: list[dict]  # what an inspector draws when failing it


@dataclass
class LineSetup:
    line: ProductionLine
    stations: list[int]
    inspectors: list[int]
    settings: policy.LineSettings
    production_version: int | None
    shadow_version: int | None = None


@dataclass
class Tally:
    rows: Counter = field(default_factory=Counter)
    per_line: dict[str, Counter] = field(default_factory=dict)


class IdBlock:
    """Ids for rows written with explicit keys (their rows refer to each other before they are
    written): from the table's own sequence on PostgreSQL, after the largest one elsewhere."""

    def __init__(self, model_class: type[models.Model]) -> None:
        self.table = model_class._meta.db_table
        self.ids: deque[int] = deque()
        self.postgres = connection.vendor == "postgresql"
        self.next_local = None

    def take(self) -> int:
        if not self.ids:
            self._reserve(20_000)
        return self.ids.popleft()

    def _reserve(self, count: int) -> None:
        with connection.cursor() as cursor:
            if self.postgres:
                cursor.execute(
                    "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                    [f'"{self.table}"', count],
                )
                self.ids.extend(row[0] for row in cursor.fetchall())
                return
            if self.next_local is None:
                cursor.execute(f'SELECT COALESCE(MAX(id), 0) FROM "{self.table}"')  # noqa: S608
                self.next_local = cursor.fetchone()[0] + 1
            self.ids.extend(range(self.next_local, self.next_local + count))
            self.next_local += count


class Writer:
    """Rows (dicts by attribute name; a missing one takes its field's default) into their
    tables as they are, timestamps included: COPY on PostgreSQL, else executemany."""

    def __init__(self) -> None:
        self.postgres = connection.vendor == "postgresql"

    def write(self, model_class: type[models.Model], rows: list[dict]) -> None:
        if not rows:
            return
        fields = model_class._meta.concrete_fields
        defaults = {f.attname: _field_default(f) for f in fields}
        names = ", ".join(f'"{f.column}"' for f in fields)
        table = model_class._meta.db_table
        with connection.cursor() as cursor:
            if not self.postgres:
                values = [
                    [f.get_db_prep_save(row.get(f.attname, defaults[f.attname]), connection)
                     for f in fields]
                    for row in rows
                ]  # fmt: skip
                marks = ", ".join(["%s"] * len(fields))
                cursor.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', values)  # noqa: S608
                return
            # JSON goes in as text; everything else as psycopg adapts it.
            columns = [(f.attname, isinstance(f, models.JSONField)) for f in fields]
            raw = cursor.cursor  # psycopg's own cursor under Django's wrapper
            with raw.copy(f'COPY "{table}" ({names}) FROM STDIN') as copy:
                for row in rows:
                    values = []
                    for name, is_json in columns:
                        value = row[name] if name in row else defaults[name]
                        values.append(json.dumps(value) if is_json and value is not None else value)
                    copy.write_row(values)


def _field_default(f: models.Field) -> Any:
    if f.has_default():
        return f.get_default()
    if f.blank and not f.null:
        return ""
    return None


class Command(BaseCommand):
    help = (
        "Bulk-load N synthetic captures with predictions, decisions and label tasks over K lines "
        "(for scale benchmarks). Refuses with DEBUG off unless --force."
    )

    def add_arguments(self, parser):
        parser.add_argument("--captures", type=int, required=True, help="captures to add")
        parser.add_argument("--lines", type=int, default=4, help="lines sharing them (default 4)")
        parser.add_argument("--days", type=float, default=30.0, help="over the last D days")
        parser.add_argument(
            "--pending", type=int, default=300, help="captures left waiting per line (humans)"
        )
        parser.add_argument("--prefix", default="SC", help="line codes: SC1, SC2, ...")
        parser.add_argument("--batch", type=int, default=10_000, help="captures per transaction")
        parser.add_argument(
            "--seed", type=int, help="the same seed, the same rows (default: new ones each run)"
        )
        parser.add_argument(
            "--force", action="store_true", help="run even with DEBUG off (a throw-away database)"
        )

    def handle(self, *args, **options):
        if not settings.DEBUG and not options["force"]:
            raise CommandError(
                "DEBUG is off: seed_scale adds synthetic captures, decisions and users to this "
                "database. Run it with DEBUG=1, or pass --force if this database is a throw-away "
                "one (a benchmark's own)."
            )
        count, line_count = options["captures"], options["lines"]
        if count < 1 or line_count < 1:
            raise CommandError("--captures and --lines must be at least 1.")
        rng = np.random.default_rng(options["seed"])
        now = datetime.now(UTC).replace(microsecond=0)
        start = now - timedelta(days=options["days"])
        started = time.monotonic()

        images = _images(np.random.default_rng(0))  # the same few files on every run
        setups, labelers, supervisor = _lines_and_users(
            prefix=options["prefix"], count=line_count, images=images, since=start
        )
        self.stdout.write(
            f"seed_scale: {count:,} captures on {', '.join(s.line.code for s in setups)} "
            f"({', '.join(s.line.automation_level for s in setups)}), "
            f"{start:%Y-%m-%d %H:%M} to {now:%Y-%m-%d %H:%M} UTC, {connection.vendor}"
        )
        plan = _plan(rng, count, setups, images, start=start, now=now, pending=options["pending"])
        tally = Tally()
        loader = _Loader(
            setups=setups,
            images=images,
            labelers=labelers,
            supervisor=supervisor,
            now=now,
            rng=rng,
            tally=tally,
        )
        batch = max(100, options["batch"])
        last_report = time.monotonic()
        for first in range(0, count, batch):
            loader.load(plan, first, min(count, first + batch))
            done = min(count, first + batch)
            if time.monotonic() - last_report >= 5 or done == count:
                last_report = time.monotonic()
                elapsed = last_report - started
                rows = sum(tally.rows.values())
                self.stdout.write(
                    f"  {done:,}/{count:,} captures, {rows:,} rows "
                    f"({rows / elapsed:,.0f} rows/s, {done / elapsed:,.0f} captures/s)"
                )
                self.stdout.flush()
        if connection.vendor == "postgresql" and not connection.in_atomic_block:
            # The planner must know the new sizes, and index-only scans need the visibility
            # map that a vacuum writes (autovacuum would get there later).
            with connection.cursor() as cursor:
                for model_class in (Capture, Prediction, Decision, LabelTask, Annotation):
                    cursor.execute(f'VACUUM (ANALYZE) "{model_class._meta.db_table}"')
        self._summary(tally, setups, time.monotonic() - started)

    def _summary(self, tally: Tally, setups: list[LineSetup], seconds: float) -> None:
        rows = sum(tally.rows.values())
        self.stdout.write(
            f"Loaded {rows:,} rows in {seconds:,.1f} s ({rows / max(seconds, 1e-9):,.0f} rows/s):"
        )
        for name in ("captures", "predictions", "decisions", "label_tasks", "annotations"):
            self.stdout.write(f"  {name:<12} {tally.rows[name]:>12,}")
        self.stdout.write(
            "  line   level      captures   model-decided  human-decided  pending  "
            "audit-pending  label-tasks (open)"
        )
        for setup in setups:
            c = tally.per_line.get(setup.line.code, Counter())
            self.stdout.write(
                f"  {setup.line.code:<6} {setup.line.automation_level:<9} {c['captures']:>9,} "
                f"{c['model']:>15,} {c['human']:>14,} {c['pending']:>8,} "
                f"{c['audit_pending']:>14,} {c['tasks']:>12,} ({c['tasks_open']:,})"
            )
        inspectors = {
            setup.line.code: list(setup.line.inspectors.values_list("username", flat=True))
            for setup in setups
        }
        self.stdout.write(
            "Users (no password: log in through the admin or set one): inspectors "
            + "; ".join(f"{code}: {', '.join(names)}" for code, names in inspectors.items())
            + f"; labelers scale-labeler-1..{LABELERS}; supervisor scale-supervisor"
        )


# --- What the load is made of: images, lines, users, models ---


def _images(rng: np.random.Generator) -> list[Image]:
    """A handful of real JPEGs (ok phones and scratched ones), stored once by content."""
    images = []
    for index in range(2 * IMAGES_PER_KIND):
        defect = index >= IMAGES_PER_KIND
        phone = synth_phone(
            seed=9000 + index, size=IMAGE_SIZE, defect_types=["scratch"] if defect else []
        )
        data = encode_jpeg(phone.image, quality=85)
        name, sha256 = blobs.blob_write(data, folder="captures", extension="jpg")
        height, width = phone.image.shape[:2]
        boxes = [tuple(int(v) for v in d.box) for d in phone.defects]
        if defect and not boxes:
            boxes = [(width // 3, height // 3, width // 2, height // 2)]
        model_regions = [
            {
                "box": list(box),
                "polygon": [[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]],
                "score": round(float(rng.uniform(0.6, 0.95)), 4),
                "defect_type": "scratch",
            }
            for box in boxes
        ]
        images.append(
            Image(
                name=name,
                sha256=sha256,
                size=len(data),
                width=width,
                height=height,
                defect=defect,
                stats={k: round(float(v), 5) for k, v in image_stats(phone.image).items()},
                embedding=rng.normal(0, 1, EMBEDDING_DIMS),
                model_regions=model_regions,
                inspector_regions=[{"box": list(b), "defect_type": "scratch"} for b in boxes],
            )
        )
    return images


def _reference(images: list[Image], rng: np.random.Generator) -> dict:
    """The training data's statistics a model carries (monitoring's default reference): drawn
    around the same images, so a healthy line reads as healthy."""
    picks = rng.integers(0, len(images), REFERENCE_SIZE)
    stats = {
        name: [round(_jitter(images[i].stats[name], rng), 5) for i in picks]
        for name in images[0].stats
    }
    embeddings = [
        np.round(images[i].embedding + rng.normal(0, 0.3, EMBEDDING_DIMS), 4).tolist()
        for i in picks
    ]
    return {
        "image_stats": stats,
        "embeddings": embeddings,
        "count": REFERENCE_SIZE,
        "source": "synthetic training images (seed_scale)",
    }


def _jitter(value: float, rng: np.random.Generator, share: float = 0.03) -> float:
    return float(value) * (1.0 + float(rng.normal(0, share)))


def _model_version(name: str, images: list[Image], rng: np.random.Generator) -> ModelVersion:
    """A registry entry for the load's model. Its artifact is a placeholder (nothing here
    serves captures): a capture posted to these lines goes to an inspector, as with any model
    that fails to load."""
    version = ModelVersion.objects.filter(name=name).order_by("-version").first()
    if version is not None:
        return version
    return ModelVersion.objects.create(
        name=name,
        version=1,
        artifact=f"models/{name}-placeholder.pt",
        sha256=uuid.uuid5(uuid.NAMESPACE_URL, f"seed_scale:{name}").hex * 2,
        metadata={
            "thresholds": {"pass": PASS_THRESHOLD, "fail": FAIL_THRESHOLD},
            "reference": _reference(images, rng),
            "seed_scale": True,
        },
        status=ModelStatus.PRODUCTION if name == "scale-net" else ModelStatus.SHADOW,
        training_data="synthetic (seed_scale)",
        metrics={"auroc": 0.97, "f1": 0.9, "recall": 0.93},
        notes="Made by seed_scale for scale benchmarks; its artifact does not exist.",
    )


def _user(username: str, role: str) -> User:
    user, created = User.objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save()
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def _deploy(line: ProductionLine, version: ModelVersion, role: str, at: datetime) -> None:
    if Deployment.objects.filter(line=line, role=role).exists():
        return
    deployment = Deployment.objects.create(line=line, model_version=version, role=role)
    # Deployed before the first capture: monitoring reads the model's captures since then.
    Deployment.objects.filter(pk=deployment.pk).update(deployed_at=at)
    action = RolloutAction.PROMOTE if role == "production" else RolloutAction.SHADOW_START
    event = RolloutEvent.objects.create(
        line=line, action=action, model_version=version, reason="seed_scale"
    )
    RolloutEvent.objects.filter(pk=event.pk).update(created_at=at)


@transaction.atomic
def _lines_and_users(
    *, prefix: str, count: int, images: list[Image], since: datetime
) -> tuple[list[LineSetup], list[int], int]:
    rng = np.random.default_rng(1)
    production = _model_version("scale-net", images, rng)
    shadow = _model_version("scale-net-next", images, rng)
    supervisor = _user("scale-supervisor", Role.SUPERVISOR)
    labelers = [_user(f"scale-labeler-{i + 1}", Role.LABELER).pk for i in range(LABELERS)]
    setups = []
    for index in range(count):
        code = f"{prefix}{index + 1}"
        level = LEVELS[index % len(LEVELS)]
        line, _ = ProductionLine.objects.get_or_create(
            code=code,
            defaults={
                "name": f"Scale line {index + 1}",
                "automation_level": level,
                "pass_threshold": PASS_THRESHOLD,
                "fail_threshold": FAIL_THRESHOLD,
                "audit_percent": 2.0,
            },
        )
        stations = []
        for number in range(STATIONS_PER_LINE):
            station = Station.objects.filter(line=line, name=f"S{number + 1}").first()
            if station is None:
                token = token_generate()
                station = Station.objects.create(
                    line=line,
                    name=f"S{number + 1}",
                    token_hash=token_hash(token),
                    token_prefix=token[:8],
                )
            stations.append(station.pk)
        inspectors = []
        for number in range(INSPECTORS_PER_LINE):
            # Inspector i works lines i and i+1: each line has two, some share a colleague.
            user = _user(f"scale-inspector-{(index + number) % max(count, 2) + 1}", Role.INSPECTOR)
            line.inspectors.add(user)
            inspectors.append(user.pk)
        deploy_at = since - timedelta(days=1)
        if line.automation_level != AutomationLevel.MANUAL:
            _deploy(line, production, "production", deploy_at)
        if index == 0:
            _deploy(line, shadow, "shadow", since + timedelta(days=1))
        roles = {d.role: d.model_version_id for d in line.deployments.all()}
        setups.append(
            LineSetup(
                line=line,
                stations=stations,
                inspectors=inspectors,
                settings=policy.LineSettings(
                    automation_level=line.automation_level,
                    pass_threshold=line.pass_threshold,
                    fail_threshold=line.fail_threshold,
                    audit_percent=line.audit_percent,
                ),
                production_version=roles.get("production"),
                shadow_version=roles.get("shadow"),
            )
        )
    return setups, labelers, supervisor.pk


# --- The plan: every capture's time, line, truth, score, and whether it still waits ---


@dataclass
class Plan:
    seconds: np.ndarray  # received_at, seconds since `start`, sorted
    line: np.ndarray  # index into setups
    station: np.ndarray
    defect: np.ndarray
    score: np.ndarray
    image: np.ndarray
    ids: np.ndarray  # (N, 16) uint8: uuid4 bytes
    pending: np.ndarray  # a human has not decided it yet
    audit_pending: np.ndarray  # an audit sample not reviewed yet
    start: datetime


def _capture_ids(rng: np.random.Generator, count: int) -> np.ndarray:
    raw = rng.integers(0, 256, size=(count, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    return raw


def _plan(
    rng: np.random.Generator,
    count: int,
    setups: list[LineSetup],
    images: list[Image],
    *,
    start: datetime,
    now: datetime,
    pending: int,
) -> Plan:
    span = (now - start).total_seconds()
    hours = int(math.ceil(span / 3600))
    hour_of_day = [(start + timedelta(hours=h)).hour for h in range(hours)]
    weights = np.array([HOUR_PROFILE[h] for h in hour_of_day], float)
    weights[-1] *= (span - (hours - 1) * 3600) / 3600  # the hour running now
    slots = rng.choice(hours, size=count, p=weights / weights.sum())
    seconds = np.minimum(slots * 3600.0 + rng.uniform(0, 3600, count), span - 1.0)
    seconds = np.sort(np.round(seconds, 6))
    # Lines run at somewhat different rates.
    line_weights = np.linspace(1.2, 0.8, len(setups)) if len(setups) > 1 else np.ones(1)
    line = rng.choice(len(setups), size=count, p=line_weights / line_weights.sum())
    station = rng.integers(0, STATIONS_PER_LINE, count)
    defect = rng.random(count) < DEFECT_RATE
    # Defective phones score high, good ones low, with overlap (the uncertain band between).
    score = np.where(defect, rng.beta(6, 1.6, count), rng.beta(1.4, 9, count))
    score = np.round(np.clip(score, 0, 1), 6)
    ok_images = [i for i, image in enumerate(images) if not image.defect]
    bad_images = [i for i, image in enumerate(images) if image.defect]
    image = np.where(defect, rng.choice(bad_images, size=count), rng.choice(ok_images, size=count))
    ids = _capture_ids(rng, count)

    # Who decides each capture (the policy, vectorised here only to pick the pending ones;
    # the loader asks policy.decide for each row).
    human = np.zeros(count, bool)
    audit = np.zeros(count, bool)
    for index, setup in enumerate(setups):
        on_line = line == index
        level = setup.line.automation_level
        if level == AutomationLevel.PARTIAL and setup.production_version:
            reading_uncertain = (score >= setup.settings.pass_threshold) & (
                score < setup.settings.fail_threshold
            )
            human |= on_line & reading_uncertain
        elif level == AutomationLevel.FULL and setup.production_version:
            for row in np.flatnonzero(on_line):
                audit[row] = policy.audit_selected(
                    uuid.UUID(bytes=ids[row].tobytes()), setup.settings.audit_percent
                )
        else:
            human |= on_line
    pending_mask = np.zeros(count, bool)
    audit_pending = np.zeros(count, bool)
    for index in range(len(setups)):
        on_line = line == index
        pending_mask[np.flatnonzero(on_line & human)[-pending:] if pending else []] = True
        waiting_audits = max(1, pending // 15) if pending else 0
        audit_pending[
            np.flatnonzero(on_line & audit)[-waiting_audits:] if waiting_audits else []
        ] = True
    return Plan(
        seconds, line, station, defect, score, image, ids, pending_mask, audit_pending, start
    )


# --- The loader: one batch of captures into rows ---


@dataclass
class Draws:
    """The random draws of one batch, one entry per capture."""

    waits: np.ndarray  # seconds a capture waits for a human
    handling: np.ndarray  # seconds the inspector looks at it
    wrong: np.ndarray  # the inspector goes against the truth
    stats_noise: np.ndarray  # (n, 6) relative noise of the image statistics
    embeddings: np.ndarray  # (n, EMBEDDING_DIMS)
    latency: np.ndarray
    shadow_noise: np.ndarray


class _Loader:
    def __init__(self, *, setups, images, labelers, supervisor, now, rng, tally) -> None:
        self.setups = setups
        self.images = images
        self.labelers = labelers
        self.supervisor = supervisor
        self.now = now
        self.rng = rng
        self.tally = tally
        self.writer = Writer()
        self.prediction_ids = IdBlock(Prediction)
        self.decision_ids = IdBlock(Decision)
        self.task_ids = IdBlock(LabelTask)
        self.annotation_ids = IdBlock(Annotation)
        # The labeler's starting point from the model's regions, and the accepted labels.
        self.task_model_regions = [pre_annotation_from_inspection(i.model_regions) for i in images]
        self.accepted_regions = [
            pre_annotation_from_inspection(i.inspector_regions) for i in images
        ]
        self.embedding_centres = np.stack([image.embedding for image in images])
        self.shadow_since = now - timedelta(days=SHADOW_DAYS)
        self.labeled_before = now - timedelta(days=LABELED_AFTER_DAYS)

    def load(self, plan: Plan, first: int, end: int) -> None:
        rows: dict[str, list[dict]] = {
            "captures": [],
            "predictions": [],
            "decisions": [],
            "label_tasks": [],
            "annotations": [],
        }
        size, rng = end - first, self.rng
        draws = Draws(
            waits=rng.lognormal(math.log(20), 0.8, size),
            handling=rng.lognormal(math.log(6), 0.5, size),
            wrong=rng.random(size) < INSPECTOR_ERROR,
            stats_noise=rng.normal(0, 0.03, (size, 6)),
            embeddings=np.round(
                self.embedding_centres[plan.image[first:end]]
                + rng.normal(0, 0.3, (size, EMBEDDING_DIMS)),
                4,
            ),
            latency=np.maximum(rng.normal(17.0, 3.0, size), 5.0).round(3),
            shadow_noise=rng.normal(0, 0.05, size),
        )
        for offset, row in enumerate(range(first, end)):
            self._capture(plan, row, draws, offset, rows)
        with transaction.atomic():
            self.writer.write(Capture, rows["captures"])
            self.writer.write(Prediction, rows["predictions"])
            self.writer.write(Decision, rows["decisions"])
            self.writer.write(LabelTask, rows["label_tasks"])
            self.writer.write(Annotation, rows["annotations"])
        for name, values in rows.items():
            self.tally.rows[name] += len(values)

    def _capture(self, plan: Plan, row: int, draws: Draws, offset: int, rows: dict) -> None:
        """One capture as capture_ingest writes it, then as the inspectors left it."""
        setup = self.setups[plan.line[row]]
        counts = self.tally.per_line.setdefault(setup.line.code, Counter())
        image_index = int(plan.image[row])
        image = self.images[image_index]
        capture_id = uuid.UUID(bytes=plan.ids[row].tobytes())
        received = plan.start + timedelta(seconds=float(plan.seconds[row]))
        score = float(plan.score[row])
        serial = f"SN{capture_id.hex[:12].upper()}"
        noise = draws.stats_noise[offset]
        rows["captures"].append(
            {
                "id": capture_id,
                "line_id": setup.line.pk,
                "station_id": setup.stations[plan.station[row]],
                "idempotency_key": capture_id.hex,
                "image": image.name,
                "image_sha256": image.sha256,
                "image_bytes": image.size,
                "image_format": "jpg",
                "width": image.width,
                "height": image.height,
                "image_stats": {
                    name: round(value * (1.0 + float(noise[i])), 5)
                    for i, (name, value) in enumerate(image.stats.items())
                },
                "metadata": {"serial": serial, "fixture": f"F{plan.station[row] + 1}"},
                "captured_at": received - timedelta(milliseconds=200),
                "received_at": received,
            }
        )
        counts["captures"] += 1
        embedding = draws.embeddings[offset].tolist()
        predictions = []
        if setup.line.automation_level != AutomationLevel.MANUAL and setup.production_version:
            predictions.append(
                self._prediction(
                    capture_id=capture_id,
                    version=setup.production_version,
                    role="production",
                    score=score,
                    image=image,
                    embedding=embedding,
                    created=received,
                    latency=float(draws.latency[offset]),
                )
            )
        # The policy routes it, exactly as at ingest.
        routing = policy.decide(
            setup.settings,
            [policy.ModelScore(p["role"], p["score"]) for p in predictions],
            capture_id,
        )
        acting = next((p for p in predictions if p["role"] == routing.acting_role), None)
        decision = {
            "id": self.decision_ids.take(),
            "capture_id": capture_id,
            "line_id": setup.line.pk,
            "reason": routing.reason.value,
            "model_shown": routing.show_model,
            "acting_prediction_id": acting["id"] if acting else None,
            "model_verdict": routing.model_verdict if acting else "",
            "audit": routing.audit,
            "regions": [],
        }
        # What the inspector says, when one looks: the truth, but for their rare mistakes.
        truth = "fail" if plan.defect[row] else "pass"
        human = ("pass" if truth == "fail" else "fail") if draws.wrong[offset] else truth
        inspector = setup.inspectors[row % len(setup.inspectors)]
        decided_at = min(received + timedelta(seconds=float(draws.waits[offset])), self.now)
        claimed_at = max(received, decided_at - timedelta(seconds=float(draws.handling[offset])))
        review = _Review(human, inspector, decided_at, claimed_at, image)
        # (source, created, the prediction it shows, pre-verdict, pre-annotation)
        tasks: list[tuple[str, datetime, dict | None, str, list]] = []
        if routing.decided_by == "model":
            decision |= {
                "status": DecisionStatus.DECIDED,
                "verdict": routing.verdict,
                "decided_by": "model",
                "decided_at": received,
            }
            counts["model"] += 1
            if routing.audit:
                # An audit sample: a label task at once, an inspector's review later.
                tasks.append(("audit", received, acting, routing.verdict, []))
                if plan.audit_pending[row]:
                    decision["audit_status"] = AuditStatus.PENDING
                    counts["audit_pending"] += 1
                elif _audit_review(decision, review):
                    tasks.append(("override", decided_at, acting, human, decision["regions"]))
        elif plan.pending[row]:
            decision |= {"status": DecisionStatus.PENDING, "verdict": "", "decided_by": ""}
            if row % 50 == 0:  # a few are open on an inspector's screen right now
                decision |= {
                    "claimed_by_id": inspector,
                    "claimed_at": self.now - timedelta(seconds=10),
                    "claim_expires_at": self.now + timedelta(seconds=50),
                }
            counts["pending"] += 1
        else:
            _human_verdict(decision, review)
            counts["human"] += 1
            if decision.get("overrode_model"):
                tasks.append(("override", decided_at, acting, human, decision["regions"]))
            elif routing.reason == DecisionReason.UNCERTAIN:
                tasks.append(("uncertain", decided_at, acting, human, decision["regions"]))

        if setup.shadow_version and received >= self.shadow_since:
            shadow = self._prediction(
                capture_id=capture_id,
                version=setup.shadow_version,
                role="shadow",
                score=round(float(np.clip(score + draws.shadow_noise[offset], 0, 1)), 6),
                image=image,
                embedding=embedding,
                created=received + timedelta(seconds=1),
                latency=float(draws.latency[offset]) + 2.0,
            )
            predictions.append(shadow)
            final = decision.get("verdict")
            if final and shadow["verdict"] in ("pass", "fail") and shadow["verdict"] != final:
                # labeling.services.task_create_if_shadow_disagrees
                at = decision.get("audited_at") or decision.get("decided_at") or received
                tasks.append(("shadow", at, shadow, final, decision["regions"]))
        rows["predictions"].extend(predictions)
        rows["decisions"].append(decision)
        for source, created, prediction, pre_verdict, regions in tasks:
            task = self._label_task(
                capture_id=capture_id,
                line_id=setup.line.pk,
                serial=serial,
                image_index=image_index,
                prediction=prediction,
                source=source,
                created=created,
                pre_verdict=pre_verdict,
                regions=regions,
                rows=rows,
            )
            counts["tasks"] += 1
            counts["tasks_open"] += task["status"] == LabelTaskStatus.OPEN

    def _prediction(
        self, *, capture_id, version, role, score, image, embedding, created, latency
    ) -> dict:
        """A Prediction row as capture_ingest writes it (the model's thresholds read it)."""
        reading = policy.model_verdict(
            score, pass_threshold=PASS_THRESHOLD, fail_threshold=FAIL_THRESHOLD
        )
        return {
            "id": self.prediction_ids.take(),
            "capture_id": capture_id,
            "model_version_id": version,
            "role": role,
            "score": score,
            "verdict": reading,
            "regions": image.model_regions if reading != "pass" else [],
            "embedding": embedding,
            "latency_ms": round(latency, 3),
            "created_at": created,
        }

    def _label_task(
        self,
        *,
        capture_id,
        line_id,
        serial,
        image_index,
        prediction,
        source,
        created,
        pre_verdict,
        regions,
        rows,
    ) -> dict:
        """A LabelTask as task_create_from_inspection makes it; the older ones labeled and
        accepted since (an annotation by one labeler, reviewed by the supervisor)."""
        image = self.images[image_index]
        score = prediction["score"] if prediction else None
        task = {
            "id": self.task_ids.take(),
            "capture_id": capture_id,
            "line_id": line_id,
            "source": source,
            "status": LabelTaskStatus.OPEN,
            "image": image.name,
            "width": image.width,
            "height": image.height,
            "group": f"serial:{serial}",
            "pre_verdict": pre_verdict,
            "pre_annotation": list(regions),
            "model_regions": (
                self.task_model_regions[image_index]
                if prediction and prediction["verdict"] != "pass"
                else []
            ),
            "model_score": score,
            "priority": task_priority(source=source, model_score=score),
            "created_at": created,
            "updated_at": created,
        }
        if created < self.labeled_before:
            submitted = created + timedelta(hours=20)
            reviewed = submitted + timedelta(hours=4)
            annotation_id = self.annotation_ids.take()
            rows["annotations"].append(
                {
                    "id": annotation_id,
                    "task_id": task["id"],
                    "labeler_id": self.labelers[task["id"] % len(self.labelers)],
                    "status": AnnotationStatus.ACCEPTED,
                    "label": "defect" if image.defect else "ok",
                    "regions": self.accepted_regions[image_index] if image.defect else [],
                    "revision": 3,
                    "started_at": submitted - timedelta(minutes=2),
                    "updated_at": submitted,
                    "submitted_at": submitted,
                    "reviewed_by_id": self.supervisor,
                    "reviewed_at": reviewed,
                }
            )
            task |= {
                "status": LabelTaskStatus.DONE,
                "accepted_annotation_id": annotation_id,
                "reviewed_at": reviewed,
                "updated_at": reviewed,
            }
        rows["label_tasks"].append(task)
        return task


@dataclass(frozen=True)
class _Review:
    verdict: str
    inspector: int
    at: datetime
    claimed_at: datetime
    image: Image

    @property
    def regions(self) -> list[dict]:
        return list(self.image.inspector_regions) if self.verdict == "fail" else []


def _human_verdict(decision: dict, review: _Review) -> None:
    """What verdict_record leaves on a pending capture."""
    decision |= {
        "status": DecisionStatus.DECIDED,
        "verdict": review.verdict,
        "decided_by": "human",
        "decided_by_user_id": review.inspector,
        "decided_at": review.at,
        "claimed_by_id": review.inspector,
        "claimed_at": review.claimed_at,
        "claim_expires_at": review.claimed_at + timedelta(seconds=60),
        "regions": review.regions,
    }
    if decision["model_verdict"] in ("pass", "fail"):
        decision["overrode_model"] = decision["model_verdict"] != review.verdict


def _audit_review(decision: dict, review: _Review) -> bool:
    """What verdict_record leaves on a reviewed audit sample: confirmed, or overridden (the
    inspector's verdict in force). True when overridden."""
    overridden = review.verdict != decision["verdict"]
    decision |= {
        "audit_status": AuditStatus.OVERRIDDEN if overridden else AuditStatus.CONFIRMED,
        "audit_verdict": review.verdict,
        "audited_by_id": review.inspector,
        "audited_at": review.at,
        "overrode_model": overridden,
        "regions": review.regions,
        "claimed_by_id": review.inspector,
        "claimed_at": review.claimed_at,
        "claim_expires_at": review.claimed_at + timedelta(seconds=60),
    }
    if overridden:
        decision |= {
            "verdict": review.verdict,
            "decided_by": "human",
            "decided_by_user_id": review.inspector,
            "decided_at": review.at,
        }
    return overridden
