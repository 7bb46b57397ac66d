"""Reads for inspection: captures with their decision, lists with filters, line settings."""

import statistics
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import CharField, Count, Prefetch, Q, QuerySet
from django.db.models.functions import Cast, Coalesce, TruncHour

from core import selectors as core_selectors
from core.errors import ApplicationError
from core.models import LineSettingsChange, ProductionLine, Station
from core.selectors import line_get  # noqa: F401 (the capture flow reads lines here too)
from inspection import policy
from inspection.models import (
    AUDIT_FINISHED,
    HUMAN_JUDGED,
    JUDGED_AT,
    AuditStatus,
    Capture,
    DecidedBy,
    Decision,
    DecisionStatus,
    Prediction,
    PredictionRole,
)
from labeling import selectors as labeling_selectors
from labeling.regions import region_defect_types
from models_registry import evidence
from models_registry.models import Deployment


def line_list() -> QuerySet[ProductionLine]:
    # The models' names, not their metadata (a training reference of ~100 KB each).
    deployments = Deployment.objects.select_related("model_version").defer(
        "model_version__metadata"
    )
    return ProductionLine.objects.prefetch_related(
        Prefetch("deployments", queryset=deployments), "inspectors"
    )


def line_changes(*, line: ProductionLine) -> QuerySet[LineSettingsChange]:
    return line.changes.select_related("changed_by")


def _capture_queryset(*, listing: bool = False) -> QuerySet[Capture]:
    if listing:
        # A page of captures shows the acting model's score, verdict and regions: not the
        # shadow model's predictions, the embeddings (monitoring's) or the model version's row.
        predictions = Prediction.objects.exclude(role=PredictionRole.SHADOW).defer("embedding")
    else:
        # Without the model's metadata: it holds its training reference (hundreds of images'
        # statistics and embeddings, ~100 KB), which was read again for every prediction of a
        # page (200 captures of the inspector's queue: 40 MB, most of a 3.5 s answer).
        predictions = Prediction.objects.select_related("model_version").defer(
            "model_version__metadata"
        )
    # The edge model's version, for the few decisions made at the station (its name only).
    captures = (
        Capture.objects.select_related(
            "line", "station", "decision", "decision__edge_model_version"
        )
        .defer(
            "decision__edge_model_version__metadata", "decision__edge_model_version__edge_export"
        )
        .prefetch_related(Prefetch("predictions", queryset=predictions))
    )
    # The image statistics are monitoring's; a page does not show them.
    return captures.defer("image_stats") if listing else captures


def capture_get(*, capture_id: Any) -> Capture:
    capture = _capture_queryset().filter(pk=capture_id).first()
    if capture is None:
        raise ApplicationError("No such capture.", code="not_found", status=404)
    return capture


def capture_for_station(*, station: Station, idempotency_key: str) -> Capture | None:
    # Nearly every key is new: a lookup of the key alone (0.7 ms) before the whole capture with
    # its decision and predictions (3 ms, most of it building the joined query).
    if not Capture.objects.filter(station=station, idempotency_key=idempotency_key).exists():
        return None
    return _capture_queryset().filter(station=station, idempotency_key=idempotency_key).first()


def capture_line_id(*, capture_id: Any) -> int | None:
    """The capture's line (None when there is no such capture): for access checks."""
    return Capture.objects.filter(pk=capture_id).values_list("line_id", flat=True).first()


def capture_list(
    *,
    line_ids: set[int] | None = None,
    line: str | None = None,
    station_id: int | None = None,
    status: str | None = None,
    verdict: str | None = None,
    received_after: datetime | None = None,
    received_before: datetime | None = None,
) -> QuerySet[Capture]:
    captures = _capture_queryset(listing=True)
    if line_ids is not None:  # an inspector: only the lines assigned to them
        captures = captures.filter(line_id__in=line_ids)
    if line:
        # By id, so the (line, received_at) index serves the page (a join on the code did not).
        captures = captures.filter(
            line_id=ProductionLine.objects.filter(code=line).values_list("pk", flat=True).first()
        )
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


# --- The inspector's queue, shift figures, and the supervisor's view of each line ---

INSPECTOR_QUEUE_LIMIT = 200
# Awaiting a human: a pending decision, or a model decision pending its audit review.
AWAITS_HUMAN = Q(status=DecisionStatus.PENDING) | Q(audit_status=AuditStatus.PENDING)


def claim_is_active(decision: Decision, *, now: datetime) -> bool:
    """A claim holds until its lease runs out (claims from before leases: claimed_at + lease)."""
    if not decision.claimed_by_id:
        return False
    expires = decision.claim_expires_at
    if expires is None and decision.claimed_at is not None:
        expires = decision.claimed_at + timedelta(seconds=claim_lease_seconds())
    return expires is not None and expires > now


def claim_lease_seconds() -> int:
    from django.conf import settings

    return int(getattr(settings, "INSPECTION_CLAIM_LEASE_SECONDS", 60))


def inspector_queue(*, line_codes: list[str], user: Any, now: datetime) -> QuerySet[Capture]:
    """Pending captures and pending audit samples on these lines that this inspector may take,
    oldest first.

    Captures another inspector holds under a live lease are left out; their own claims stay.
    """
    held_by_others = (
        Q(decision__claimed_by__isnull=False)
        & ~Q(decision__claimed_by=user.pk)
        & Q(decision__claim_expires_at__gt=now)
    )
    return (
        _capture_queryset(listing=True)
        .filter(
            Q(decision__status=DecisionStatus.PENDING)
            | Q(decision__audit_status=AuditStatus.PENDING),
            line__code__in=line_codes,
        )
        .exclude(held_by_others)
        .order_by("received_at", "id")[:INSPECTOR_QUEUE_LIMIT]
    )


def queue_depth(*, line_codes: list[str]) -> dict[str, int]:
    """Captures awaiting a human per line, audit samples included (claimed ones too: they are
    still waiting)."""
    rows = (
        Decision.objects.filter(AWAITS_HUMAN, capture__line__code__in=line_codes)
        .values("capture__line__code")
        .annotate(n=Count("pk"))
    )
    depths = dict.fromkeys(line_codes, 0)
    depths.update({row["capture__line__code"]: row["n"] for row in rows})
    return depths


@dataclass(frozen=True)
class ShiftStats:
    decisions: int
    median_seconds: float | None  # from opening (claim) to verdict


def shift_start(now: datetime) -> datetime:
    """The inspector's shift, for the header's figures: the last 8 hours."""
    return now - timedelta(hours=8)


def inspector_shift_stats(*, user: Any, since: datetime) -> ShiftStats:
    # Verdicts and audit reviews alike (an overriding review is both: one row).
    rows = list(
        Decision.objects.filter(
            Q(decided_by_user=user, decided_by="human", decided_at__gte=since)
            | Q(audited_by=user, audited_at__gte=since)
        ).values_list("claimed_at", Coalesce("audited_at", "decided_at"))
    )
    durations = [
        (decided - claimed).total_seconds()
        for claimed, decided in rows
        if claimed is not None and decided >= claimed
    ]
    return ShiftStats(
        decisions=len(rows),
        median_seconds=round(statistics.median(durations), 1) if durations else None,
    )


@dataclass(frozen=True)
class Agreement:
    compared: int  # human decisions next to a confident model verdict
    agreeing: int
    overrides: int  # of those where the model was shown: the human went the other way
    shown: int

    @property
    def agreement_percent(self) -> float | None:
        return round(100 * self.agreeing / self.compared, 1) if self.compared else None

    @property
    def override_percent(self) -> float | None:
        return round(100 * self.overrides / self.shown, 1) if self.shown else None


def line_agreement(*, line: ProductionLine, last: int = 200, reasons: Any = None) -> Agreement:
    """Model-vs-human agreement over the last `last` human decisions with a confident model,
    audit reviews included (in `full` the model's verdict is always confident)."""
    # On the decision's own line and in the order of the `decision_judged_recent` index: the
    # newest `last` are read from it, not sorted out of every judged decision of the line.
    decisions = Decision.objects.filter(HUMAN_JUDGED, line=line, overrode_model__isnull=False)
    if reasons is not None:
        decisions = decisions.filter(reason__in=sorted(reasons))
    recent = list(
        decisions.order_by(JUDGED_AT.desc()).values_list("overrode_model", "model_shown")[:last]
    )
    shown = [overrode for overrode, model_shown in recent if model_shown]
    return Agreement(
        compared=len(recent),
        agreeing=sum(1 for overrode, _ in recent if not overrode),
        overrides=sum(1 for overrode in shown if overrode),
        shown=len(shown),
    )


@dataclass(frozen=True)
class GuardRail:
    min_captures: int
    min_agreement_percent: float
    compared: int
    agreement_percent: float | None
    ok: bool
    rule: str  # the rule in words, as the supervisor reads it on the page
    status: str  # where the line stands against it


def line_guard_rail(*, line: ProductionLine) -> GuardRail:
    """Whether the line may move to a level where the model decides (partial, full)."""
    needed = line.min_shadow_captures
    agreement = line_agreement(line=line, last=max(needed, 1), reasons=policy.GUARD_RAIL_REASONS)
    percent = agreement.agreement_percent
    rule = (
        f"The model may decide on {line.code} only after at least {needed} human decisions "
        f"on it next to a confident model verdict (shadow or assisted) agree with the model "
        f"at least {line.min_agreement_percent:g}% of the time."
    )
    if needed == 0:
        ok, status = True, "no compared captures needed"
    elif agreement.compared < needed:
        ok, status = False, f"{agreement.compared} of {needed} compared captures so far"
    else:
        ok = percent is not None and percent >= line.min_agreement_percent
        status = f"agreement {percent:g}% over the last {agreement.compared} compared captures"
    return GuardRail(
        min_captures=needed,
        min_agreement_percent=line.min_agreement_percent,
        compared=agreement.compared,
        agreement_percent=percent,
        ok=ok,
        rule=rule,
        status=status,
    )


@dataclass(frozen=True)
class LineOverview:
    line: ProductionLine
    models: dict[str, Any]  # role -> Deployment
    queue_depth: int
    captures_last_hour: int
    agreement: Agreement
    guard_rail: GuardRail
    # Verdicts in force given over the last day, by who gave them: model, human, edge.
    decided_last_day: dict[str, int]


def line_decided_by(*, line: ProductionLine, since: datetime) -> dict[str, int]:
    """The line's verdicts in force since `since`, by who gave them: the server's model, an
    inspector, or the station's edge model during an outage (its own clock); read on the
    (line, decided_at) index."""
    counts = dict.fromkeys(DecidedBy.values, 0)
    rows = (
        Decision.objects.filter(line=line, decided_at__gte=since, status=DecisionStatus.DECIDED)
        .values_list("decided_by")
        .annotate(n=Count("pk"))
        .order_by()
    )
    counts.update({decided_by: n for decided_by, n in rows if decided_by in counts})
    return counts


def line_overview(*, now: datetime) -> list[LineOverview]:
    """Every line at a glance, for the supervisor."""
    lines = list(line_list())
    depths = queue_depth(line_codes=[line.code for line in lines])
    hour = dict(
        Capture.objects.filter(received_at__gte=now - timedelta(hours=1))
        .values_list("line_id")
        .annotate(n=Count("pk"))
    )
    return [
        LineOverview(
            line=line,
            models={d.role: d for d in line.deployments.all()},
            queue_depth=depths.get(line.code, 0),
            captures_last_hour=hour.get(line.pk, 0),
            agreement=line_agreement(line=line),
            guard_rail=line_guard_rail(line=line),
            decided_last_day=line_decided_by(line=line, since=now - timedelta(days=1)),
        )
        for line in lines
    ]


def recent_line_changes(*, limit: int = 30) -> QuerySet[LineSettingsChange]:
    return LineSettingsChange.objects.select_related("line", "changed_by")[:limit]


# The registry's evidence on deployments (models_registry.evidence): decisions joined with them.


def canary_record(*, deployment: Deployment) -> evidence.CanaryRecord:
    """How often inspectors went against the canary's verdicts since it was deployed."""
    # Human verdicts next to its output, and audit reviews of its own decisions (in `full`).
    rows = Decision.objects.filter(
        HUMAN_JUDGED,
        capture__line_id=deployment.line_id,
        acting_prediction__role="canary",
        acting_prediction__model_version_id=deployment.model_version_id,
        overrode_model__isnull=False,
        decided_at__gte=deployment.deployed_at,
    ).values_list("overrode_model", flat=True)
    overrides = list(rows)
    return evidence.CanaryRecord(compared=len(overrides), overrides=sum(1 for o in overrides if o))


def shadow_agreement(
    *, line: Any, model_version: Any, bucket_hours: int = 1, last: int = 5000
) -> list[evidence.AgreementBucket]:
    """The shadow model's verdicts next to the acting model's and the inspectors', per time
    bucket (newest first), over its last `last` shadow predictions on the line.

    One read: the model's newest shadow predictions (the `prediction_shadow_recent` index),
    each with its capture's decision and the acting prediction the decision rests on (three
    queries, two of them with 5,000 ids in an IN list, took 1.9 s on a million captures). Each
    row brings its hour as text: turning 5,000 timestamps into datetimes was a third of the
    version page; a few dozen distinct hours are parsed instead."""
    hour = Cast(TruncHour("capture__received_at", tzinfo=UTC), CharField())
    rows = (
        Prediction.objects.filter(capture__line=line, role="shadow", model_version=model_version)
        .order_by("-created_at")
        .annotate(hour=hour)
        .values_list(
            "verdict",
            "hour",
            "capture__decision__acting_prediction__verdict",
            "capture__decision__verdict",
            "capture__decision__decided_by",
            "capture__decision__audit_status",
        )[:last]
    )
    buckets: dict[str, list[int]] = {}
    for verdict, hour_text, acting, final, decided_by, audit_status in rows:
        counts = buckets.get(hour_text)
        if counts is None:
            counts = buckets[hour_text] = [0, 0, 0, 0, 0]
        counts[0] += 1
        if acting is not None:
            counts[1] += 1
            counts[2] += acting == verdict
        # The verdict in force where a human judged (an audit review confirms or overrides).
        if (decided_by == "human" or audit_status in AUDIT_FINISHED) and verdict in _VERDICTS:
            counts[3] += 1
            counts[4] += final == verdict
    merged: dict[datetime, list[int]] = {}
    for hour_text, counts in buckets.items():
        start = datetime.fromisoformat(hour_text[:19]).replace(tzinfo=UTC)
        start = start.replace(hour=start.hour - start.hour % bucket_hours)
        total = merged.setdefault(start, [0, 0, 0, 0, 0])
        for index, count in enumerate(counts):
            total[index] += count
    return [
        evidence.AgreementBucket(start, *counts) for start, counts in sorted(merged.items())[::-1]
    ]


_VERDICTS = ("pass", "fail")


# --- Defect types on the inspector's regions ---


def defect_type_names_accepted(*, capture: Capture) -> set[str]:
    """The types an inspector's region on this capture may carry: the active ones of the line's
    taxonomy, those dataset versions hold, and those of the models' own regions."""
    names = set(core_selectors.defect_type_names_active(line=capture.line))
    names |= labeling_selectors.defect_type_names_in_datasets()
    regions = Prediction.objects.filter(capture=capture).values_list("regions", flat=True)
    names |= region_defect_types(*regions)
    return names


def defect_type_in_decisions(*, name: str) -> bool:
    """Whether any inspector's region carries this defect type."""
    pattern = labeling_selectors.regions_json_pattern(name)
    return Decision.objects.filter(regions__icontains=pattern).exists()
