"""Bounded reads for monitoring: a line's newest captures and judged decisions, the model's
first window on the line, hourly yield; never a scan of all captures (each query is limited
by count or by a time range on an index)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncHour

from core import selectors as core_selectors
from core.models import LineSettingsChange, ProductionLine
from inspection.models import HUMAN_JUDGED, Capture, Decision, DecisionStatus
from models_registry.models import Deployment, RolloutEvent
from monitoring.models import (
    Alert,
    LineMonitorState,
    MonitoringAction,
    MonitoringRules,
    MonitoringRulesChange,
    Reference,
    SignalEvaluation,
    WebhookDelivery,
)

STAT_FEATURES = ("brightness", "contrast", "sharpness", "r_g", "b_g", "saturation")


@dataclass(frozen=True)
class CaptureRow:
    id: Any
    received_at: datetime
    image_stats: dict
    score: float | None
    embedding: list
    model_version_id: int | None
    model_verdict: str
    status: str
    verdict: str


_CAPTURE_FIELDS = (
    "id",
    "received_at",
    "image_stats",
    "decision__acting_prediction__score",
    "decision__acting_prediction__embedding",
    "decision__acting_prediction__model_version_id",
    "decision__model_verdict",
    "decision__status",
    "decision__verdict",
)


def _rows(queryset: QuerySet[Capture]) -> list[CaptureRow]:
    return [
        CaptureRow(
            cid, at, stats or {}, score, emb or [], mv, mverdict or "", status or "", v or ""
        )
        for cid, at, stats, score, emb, mv, mverdict, status, v in queryset.values_list(
            *_CAPTURE_FIELDS
        )
    ]


def recent_captures(*, line: ProductionLine, limit: int) -> list[CaptureRow]:
    """The line's newest `limit` captures, oldest first."""
    rows = _rows(Capture.objects.filter(line=line).order_by("-received_at")[:limit])
    return rows[::-1]


def captures_between(
    *, line: ProductionLine, since: datetime, until: datetime | None = None, limit: int = 2000
) -> list[CaptureRow]:
    """The first `limit` captures of the line from `since` (to `until`), oldest first."""
    queryset = Capture.objects.filter(line=line, received_at__gte=since)
    if until is not None:
        queryset = queryset.filter(received_at__lt=until)
    return _rows(queryset.order_by("received_at")[:limit])


def production_deployment(*, line: ProductionLine) -> Deployment | None:
    # The version's metadata (its training reference, ~100 KB) is read only when a reference is
    # made from it: loaded then, on first access.
    return (
        Deployment.objects.filter(line=line, role="production")
        .select_related("model_version")
        .defer("model_version__metadata")
        .first()
    )


def baseline_captures(
    *, line: ProductionLine, deployment: Deployment, limit: int
) -> list[CaptureRow]:
    """The production model's first `limit` captures on the line, where it acted."""
    queryset = Capture.objects.filter(
        line=line,
        received_at__gte=deployment.deployed_at,
        decision__acting_prediction__model_version_id=deployment.model_version_id,
    )
    return _rows(queryset.order_by("received_at")[:limit])


def _judged(line: ProductionLine, model_version_id: int) -> QuerySet[Decision]:
    return Decision.objects.filter(
        HUMAN_JUDGED,
        line=line,
        overrode_model__isnull=False,
        acting_prediction__model_version_id=model_version_id,
    )


def judged_overrides(
    *,
    line: ProductionLine,
    deployment: Deployment,
    limit: int,
    reference_limit: int,
    known_baseline: dict | None = None,
) -> dict:
    """Overrides among the newest `limit` and the first `reference_limit` judged decisions on
    the line's production model since it went into production. A complete first window does
    not change: pass the one a previous run found (`known_baseline`) and it is not read again."""
    judged = _judged(line, deployment.model_version_id).filter(
        decided_at__gte=deployment.deployed_at
    )
    recent = list(
        judged.order_by("-decided_at").values_list("overrode_model", "decided_at")[:limit]
    )
    counts = {
        "recent_overrides": sum(1 for overrode, _ in recent if overrode),
        "recent_judged": len(recent),
    }
    known = known_baseline or {}
    if (
        known.get("deployment") == deployment.pk
        and known.get("baseline_judged") == reference_limit
        and recent
        and known.get("ends_before", "") < recent[-1][1].isoformat()
    ):
        return {**counts, **{k: known[k] for k in ("baseline_overrides", "baseline_judged")}}
    first = judged
    if recent:  # the first window ends where the recent one begins: they never share a decision
        first = first.filter(decided_at__lt=recent[-1][1])
    reference = list(
        first.order_by("decided_at").values_list("overrode_model", "decided_at")[:reference_limit]
    )
    return {
        **counts,
        "baseline_overrides": sum(1 for overrode, _ in reference if overrode),
        "baseline_judged": len(reference),
        "baseline_ends": reference[-1][1].isoformat() if reference else None,
    }


# An hour's yield counts stop changing this long after it ended (late verdicts): later runs
# reuse them. Rows loaded into the past later are found by decisions_backfilled.
HOURS_SETTLE_AFTER = timedelta(hours=2)


def hourly_yield(
    *, line: ProductionLine, now: datetime, hours: int = 24, known: dict | None = None
) -> list[dict]:
    """Decided captures and failed ones per hour over the last `hours` hours, oldest first.

    Incremental: `known` holds the counts of hours a previous run computed ({hour: (total,
    defects)}); hours that ended more than two hours ago do not change any more, so only the
    newest hours (and any missing) are counted again."""
    start = (now - timedelta(hours=hours - 1)).replace(minute=0, second=0, microsecond=0)
    settled = now.replace(minute=0, second=0, microsecond=0) - HOURS_SETTLE_AFTER
    slots = [start + timedelta(hours=index) for index in range(hours)]
    known = known or {}
    reuse = {h: known[h.isoformat()] for h in slots if h < settled and h.isoformat() in known}
    first_missing = next((h for h in slots if h not in reuse), None)
    counted: dict = {}
    if first_missing is not None:
        rows = (
            Decision.objects.filter(
                capture__line=line,
                capture__received_at__gte=first_missing,
                status=DecisionStatus.DECIDED,
            )
            .annotate(hour=TruncHour("capture__received_at"))
            .values("hour")
            .annotate(total=Count("pk"), defects=Count("pk", filter=Q(verdict="fail")))
        )
        counted = {row["hour"]: (row["total"], row["defects"]) for row in rows}
    out = []
    for hour in slots:
        total, defects = reuse[hour] if hour in reuse else counted.get(hour, (0, 0))
        out.append({"hour": hour.isoformat(), "total": total, "defects": defects})
    return out


def defect_types(*, line: ProductionLine, since: datetime, limit: int = 2000) -> dict[str, int]:
    """What inspectors marked on the phones they failed (their regions' defect types)."""
    counts: dict[str, int] = {}
    rows = (
        Decision.objects.filter(
            line=line, decided_by="human", verdict="fail", decided_at__gte=since
        )
        .order_by("-decided_at")
        .values_list("regions", flat=True)[:limit]
    )
    for regions in rows:
        kinds = {
            r.get("defect_type") or "unspecified" for r in regions or [] if isinstance(r, dict)
        }
        for kind in kinds or {"unspecified"}:
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def defect_type_styles(*, line: ProductionLine) -> dict[str, dict[str, Any]]:
    """Label, colour and severity of each defect type name, the line's taxonomy first."""
    return core_selectors.defect_type_styles(line=line)


def throughput_and_queue_time(*, line: ProductionLine, now: datetime) -> tuple[int, float | None]:
    """Captures in the last hour, and the median seconds a human-decided one waited."""
    since = now - timedelta(hours=1)
    count = Capture.objects.filter(line=line, received_at__gte=since).count()
    waits = (
        Decision.objects.filter(line=line, decided_by="human", decided_at__gte=since)
        .order_by("-decided_at")
        .values_list("decided_at", "capture__received_at")[:1000]
    )
    seconds = [(decided - received).total_seconds() for decided, received in waits]
    return count, (statistics.median(seconds) if seconds else None)


def newest_activity(*, line: ProductionLine) -> datetime | None:
    """The newest capture's arrival or decision's time on the line: what a run has seen."""
    capture = (
        Capture.objects.filter(line=line)
        .order_by("-received_at")
        .values_list("received_at", flat=True)
        .first()
    )
    decision = (
        Decision.objects.filter(line=line, decided_at__isnull=False)
        .order_by("-decided_at")
        .values_list("decided_at", flat=True)
        .first()
    )
    audited = (
        Decision.objects.filter(line=line, audited_at__isnull=False)
        .order_by("-audited_at")
        .values_list("audited_at", flat=True)
        .first()
    )
    times = [t for t in (capture, decision, audited) if t is not None]
    return max(times) if times else None


def newest_decision_id(*, line: ProductionLine) -> int | None:
    """The line's newest decision row: what a run has seen, whatever its times say."""
    return Decision.objects.filter(line=line).order_by("-pk").values_list("pk", flat=True).first()


# Decision rows arriving between two runs are a minute of traffic; more than this many at once
# is a bulk load, read as one.
BACKFILL_SCAN_LIMIT = 5000


def decisions_backfilled(*, line: ProductionLine, after_id: int | None, before: datetime) -> bool:
    """Whether decision rows written since row `after_id` belong to captures received before
    `before`: rows loaded into the past (a bulk load, an import), which the counts kept from
    earlier runs have not seen. A capture's decision row is written when it arrives, so live
    traffic never looks like this. Bounded: the new rows in id order, at most
    BACKFILL_SCAN_LIMIT of them (more is a bulk load)."""
    rows = Decision.objects.filter(line=line)
    if after_id is not None:
        rows = rows.filter(pk__gt=after_id)
    received = list(
        rows.order_by("pk").values_list("capture__received_at", flat=True)[:BACKFILL_SCAN_LIMIT]
    )
    return len(received) >= BACKFILL_SCAN_LIMIT or any(at < before for at in received)


def active_reference(*, line: ProductionLine) -> Reference | None:
    # The embeddings (hundreds of vectors) are compared only for a pinned reference: read then.
    return Reference.objects.filter(line=line, is_active=True).defer("embeddings").first()


def line_rules(*, line: ProductionLine) -> MonitoringRules:
    rules = MonitoringRules.objects.filter(line=line).first()
    return rules or MonitoringRules(line=line)


def line_state(*, line: ProductionLine) -> LineMonitorState | None:
    return LineMonitorState.objects.filter(line=line).first()


def signal_history(
    *, line: ProductionLine, signal: str, since: datetime, limit: int = 720
) -> list[Any]:
    """A signal's evaluations since `since`, oldest first (at most `limit`, the newest), as
    rows of the fields a chart and the history API show: not the evidence (up to 4 KB each)
    nor model instances (a day is 720 points a signal, 2,880 on a line's page)."""
    rows = (
        SignalEvaluation.objects.filter(line=line, signal=signal, evaluated_at__gte=since)
        .order_by("-evaluated_at")
        .values_list(
            "evaluated_at",
            "status",
            "value",
            "band_low",
            "band_high",
            "sample_size",
            "summary",
            named=True,
        )[:limit]
    )
    return list(rows)[::-1]


def alerts(*, line: ProductionLine | None = None, is_open: bool | None = None) -> QuerySet[Alert]:
    queryset = Alert.objects.select_related("line")
    if line is not None:
        queryset = queryset.filter(line=line)
    if is_open is not None:
        queryset = queryset.filter(is_open=is_open)
    return queryset


def deliveries(*, line: ProductionLine, limit: int = 50) -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.filter(alert__line=line).select_related("alert")[:limit]


def rules_changes(*, line: ProductionLine, limit: int = 30) -> QuerySet[MonitoringRulesChange]:
    return MonitoringRulesChange.objects.filter(line=line).select_related("changed_by")[:limit]


def recent_capture_ids(*, line: ProductionLine, limit: int = 8) -> list[Any]:
    return list(
        Capture.objects.filter(line=line)
        .order_by("-received_at")
        .values_list("id", flat=True)[:limit]
    )


def rollout_events(*, line: ProductionLine, since: datetime) -> QuerySet[RolloutEvent]:
    return RolloutEvent.objects.filter(line=line, created_at__gte=since).select_related(
        "model_version"
    )[:200]


def line_settings_changes(*, line: ProductionLine, since: datetime) -> QuerySet[LineSettingsChange]:
    return LineSettingsChange.objects.filter(line=line, changed_at__gte=since)[:200]


def actions(*, line: ProductionLine, limit: int = 20) -> QuerySet[MonitoringAction]:
    return MonitoringAction.objects.filter(line=line).select_related("user")[:limit]
