"""The monitoring job: every line's four signals from bounded windows, stored as a point of
each signal's time series, and each alert stepped through its hysteresis.

Idempotent: a run that finds nothing new on a line since the last one (no capture, no decision)
stores nothing and steps no alert, so beat running twice, or the command beside beat, counts
one window once. The statistics are computed outside any transaction; the short write at the
end locks the line's state row and gives up when another run already wrote this window.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from threadpoolctl import threadpool_limits

from core.models import AutomationLevel, ProductionLine
from monitoring import detectors, selectors
from monitoring.models import LineMonitorState, ReferenceKind, Signal, SignalEvaluation
from monitoring.selectors import STAT_FEATURES, CaptureRow
from monitoring.services import alerts
from monitoring.services.references import reference_for_line

logger = logging.getLogger(__name__)


def _stats(rows: list[CaptureRow]) -> dict[str, list[float]]:
    return {
        name: [float(r.image_stats[name]) for r in rows if name in r.image_stats]
        for name in STAT_FEATURES
    }


def _data_samples(rules: Any, reference: Any, baseline: list[CaptureRow], trend: list[CaptureRow]):
    """The line's own normal (a pinned window, else its production model's first captures,
    once there are enough of them) and the training data's range (monitoring.detectors).
    Against the first captures only later captures count: a window never meets itself."""
    recent = trend[-rules.data_window :]
    training = (
        reference.image_stats if reference and reference.kind == ReferenceKind.TRAINING_DATA else {}
    )
    compared_recent, compared_trend = recent, trend
    if reference is not None and reference.kind == ReferenceKind.PINNED:
        normal_stats, normal_embeddings, kind = (
            reference.image_stats,
            reference.embeddings,
            "pinned",
        )
        model_version_id = reference.model_version_id
    elif len(baseline) >= rules.reference_size:
        end = baseline[-1].received_at
        compared_recent = [r for r in recent if r.received_at > end]
        compared_trend = [r for r in trend if r.received_at > end]
        model_version_id = baseline[0].model_version_id
        normal_stats = _stats(baseline)
        normal_embeddings = [r.embedding for r in baseline if r.embedding]
        kind = "first_captures"
    else:
        normal_stats, normal_embeddings, kind, model_version_id = {}, [], "", None
    embeddings = [
        r.embedding
        for r in compared_recent
        if r.embedding and r.model_version_id == model_version_id
    ]
    return detectors.DataSamples(
        reference_stats=normal_stats if compared_recent else {},
        recent_stats=_stats(compared_recent) if normal_stats else _stats(recent),
        trend_stats=_stats(compared_trend),
        reference_embeddings=normal_embeddings if embeddings else (),
        recent_embeddings=embeddings if normal_embeddings else (),
        reference_kind=kind or (reference.kind if reference else ""),
        training_stats=training,
        training_recent_stats=_stats(recent),
    )


def _prediction_samples(recent: list[CaptureRow], baseline: list[CaptureRow], model_version_id):
    recent = [r for r in recent if r.score is not None and r.model_version_id == model_version_id]
    return detectors.PredictionSamples(
        baseline_scores=[r.score for r in baseline if r.score is not None],
        recent_scores=[r.score for r in recent],
        baseline_deferred=sum(1 for r in baseline if r.model_verdict == "uncertain"),
        recent_deferred=sum(1 for r in recent if r.model_verdict == "uncertain"),
        baseline_failed=sum(1 for r in baseline if r.model_verdict == "fail"),
        recent_failed=sum(1 for r in recent if r.model_verdict == "fail"),
    )


def _known_concept_baseline(line: ProductionLine, fresh: bool) -> dict | None:
    """The model's first judged decisions as the previous run counted them (none when rows
    were loaded into the past since: `fresh`)."""
    if fresh:
        return None
    state = selectors.line_state(line=line)
    return ((state.last_report if state else None) or {}).get("concept_baseline")


def _known_hours(line: ProductionLine, fresh: bool) -> dict:
    """The hourly counts the previous run stored with its report (for the incremental p-chart);
    none when rows were loaded into the past since (`fresh`): every hour is counted again."""
    if fresh:
        return {}
    state = selectors.line_state(line=line)
    report = (state.last_report if state else None) or {}
    periods = (((report.get("signals") or {}).get("yield") or {}).get("p_chart") or {}).get(
        "periods"
    ) or []
    return {p["hour"]: (p["total"], p["defects"]) for p in periods if "hour" in p}


def _yield_samples(
    line: ProductionLine,
    baseline: list[CaptureRow],
    now: datetime,
    newest: datetime | None,
    fresh: bool,
):
    # The last 24 hours of the line's production (up to its newest capture when it stopped).
    now = min(now, newest) if newest else now
    hours = selectors.hourly_yield(line=line, now=now, known=_known_hours(line, fresh))
    decided = [r for r in baseline if r.status == "decided"]
    baseline_rate = (
        sum(1 for r in decided if r.verdict == "fail") / len(decided)
        if len(decided) >= 100
        else None
    )
    throughput, queue = selectors.throughput_and_queue_time(line=line, now=now)
    return detectors.YieldSamples(
        hours=[h["hour"] for h in hours],
        defects=[h["defects"] for h in hours],
        totals=[h["total"] for h in hours],
        baseline_rate=baseline_rate,
        baseline_count=len(decided),
        defect_types=selectors.defect_types(line=line, since=now - timedelta(hours=24)),
        defect_type_styles=selectors.defect_type_styles(line=line),
        throughput_per_hour=float(throughput),
        queue_seconds_median=queue,
    )


def _evaluate(
    line: ProductionLine,
    now: datetime,
    through: datetime | None,
    *,
    persist: bool = True,
    fresh: bool = False,
) -> tuple[dict[str, detectors.SignalResult], dict]:
    rules = selectors.line_rules(line=line)
    reference = reference_for_line(line=line, size=rules.reference_size, persist=persist)
    deployment = selectors.production_deployment(line=line)
    trend = selectors.recent_captures(line=line, limit=max(rules.trend_window, rules.data_window))
    recent = trend[-rules.data_window :]
    baseline = (
        selectors.baseline_captures(line=line, deployment=deployment, limit=rules.reference_size)
        if deployment
        else []
    )
    model_version_id = deployment.model_version_id if deployment else None
    data = _data_samples(rules, reference, baseline, trend)
    results = {Signal.DATA_DRIFT: detectors.data_drift(data)}
    results[Signal.PREDICTION_DRIFT] = detectors.prediction_drift(
        _prediction_samples(recent, baseline, model_version_id)
    )
    if deployment is not None:
        counts = selectors.judged_overrides(
            line=line,
            deployment=deployment,
            limit=rules.decision_window,
            reference_limit=rules.decision_reference_size,
            known_baseline=_known_concept_baseline(line, fresh),
        )
        concept_baseline = {
            "deployment": deployment.pk,
            "baseline_overrides": counts["baseline_overrides"],
            "baseline_judged": counts["baseline_judged"],
            "ends_before": counts.pop("baseline_ends", None) or "",
        }
        concept = detectors.ConceptSamples(
            **counts, audit_only=line.automation_level == AutomationLevel.FULL
        )
    else:
        concept, concept_baseline = detectors.ConceptSamples(0, 0, 0, 0), None
    results[Signal.CONCEPT_DRIFT] = detectors.concept_drift(concept)
    results[Signal.YIELD] = detectors.yield_signal(
        _yield_samples(line, baseline, now, through, fresh)
    )
    context = {
        "model_version": (
            {
                "id": model_version_id,
                "label": f"{deployment.model_version.name} v{deployment.model_version.version}",
                "deployed_at": deployment.deployed_at.isoformat(),
            }
            if deployment
            else None
        ),  # fmt: skip
        "reference": _reference_summary(reference),
        "concept_baseline": concept_baseline,
    }
    return results, context


def _reference_summary(reference: Any) -> dict | None:
    if reference is None:
        return None
    return {
        "id": reference.pk,
        "kind": reference.kind,
        "description": reference.description,
        "count": reference.count,
        "window_start": reference.window_start.isoformat() if reference.window_start else None,
        "window_end": reference.window_end.isoformat() if reference.window_end else None,
        "capture_ids": reference.capture_ids,
    }


def _report(line: ProductionLine, now: datetime, through: Any, *, persist: bool, fresh: bool):
    # The statistics multiply small matrices: many BLAS threads only fight over the cores the
    # web and worker processes share (765 ms against 17 ms for one line on a busy machine).
    with threadpool_limits(limits=1):
        results, context = _evaluate(line, now, through, persist=persist, fresh=fresh)
    report = {
        "line": line.code,
        "automation_level": line.automation_level,
        "evaluated_at": now.isoformat(),
        "through": through.isoformat() if through else None,
        **context,
        "signals": {str(name): result.to_dict() for name, result in results.items()},
    }
    return results, report


def line_check(*, line: ProductionLine, now: datetime | None = None, force: bool = False) -> dict:
    """Evaluate one line now (when something new arrived, or with `force`), store the
    evaluation, step the alerts, and return its report:
    {"signals": {name: {status, summary, value, band, ...}}, "alerts": [...], ...}."""
    now = now or timezone.now()
    state = selectors.line_state(line=line)
    through = selectors.newest_activity(line=line)
    newest_id = selectors.newest_decision_id(line=line)
    if _seen(state, through, newest_id) and not force:
        return _with_alerts(state.last_report, line)
    fresh = _backfilled(line, state, now, through)
    results, report = _report(line, now, through, persist=True, fresh=fresh)
    _store(line, now, (through, newest_id), results, report, force=force)
    return _with_alerts(report, line)


def line_report(*, line: ProductionLine, now: datetime | None = None) -> dict:
    """The same report without writing anything (for reads): the stored one when nothing
    arrived since the last run, else computed now and not stored."""
    now = now or timezone.now()
    state = selectors.line_state(line=line)
    through = selectors.newest_activity(line=line)
    if _seen(state, through, selectors.newest_decision_id(line=line)):
        return _with_alerts(state.last_report, line)
    fresh = _backfilled(line, state, now, through)
    _, report = _report(line, now, through, persist=False, fresh=fresh)
    return _with_alerts(report, line)


def _seen(state: LineMonitorState | None, through: Any, newest_id: int | None) -> bool:
    """Whether the last run saw everything there is: the newest time and the newest row."""
    return (
        state is not None
        and bool(state.last_report)
        and state.through == through
        and state.decision_id_through == newest_id
    )


def _backfilled(
    line: ProductionLine, state: LineMonitorState | None, now: datetime, through: Any
) -> bool:
    """Rows loaded into the past since the last run (seed_scale, an import): the counts that
    run kept for settled hours and for the model's first judged window are stale."""
    if state is None or not state.last_report:
        return False  # nothing kept to go stale
    newest = min(now, through) if through else now
    return selectors.decisions_backfilled(
        line=line,
        after_id=state.decision_id_through,
        before=newest - selectors.HOURS_SETTLE_AFTER,
    )


@transaction.atomic
def _store(line, now, seen, results, report, *, force: bool) -> None:
    through, newest_id = seen
    state, _ = LineMonitorState.objects.select_for_update().get_or_create(line=line)
    if _seen(state, through, newest_id) and not force:
        return  # another run stored this window meanwhile
    SignalEvaluation.objects.bulk_create(
        SignalEvaluation(
            line=line,
            signal=name,
            status=result.status,
            evaluated_at=now,
            through=through,
            value=result.to_dict()["value"],
            band_low=result.band[0] if result.band else None,
            band_high=result.band[1] if result.band else None,
            sample_size=result.sample_size,
            summary=result.summary[:300],
            evidence=result.to_dict(),
        )
        for name, result in results.items()
    )
    rules = selectors.line_rules(line=line)
    states = dict(state.alert_states or {})
    for name, result in results.items():
        states[str(name)] = alerts.alert_advance(
            line=line, signal=str(name), result=result, previous=states.get(str(name)),
            rules=rules, now=now,
        )  # fmt: skip
    state.alert_states = states
    state.through = through
    state.decision_id_through = newest_id
    state.evaluated_at = now
    state.last_report = report
    state.save()


def _with_alerts(report: dict, line: ProductionLine) -> dict:
    open_alerts = selectors.alerts(line=line, is_open=True)
    return {**report, "alerts": [alerts.alert_payload(a) for a in open_alerts]}


def lines_check(*, line_code: str | None = None, force: bool = False) -> dict:
    """Every line (or one), as `monitoring_check --json` prints and the beat job runs."""
    lines = ProductionLine.objects.all()
    if line_code:
        lines = lines.filter(code=line_code)
    reports = {}
    for line in lines:
        try:
            reports[line.code] = line_check(line=line, force=force)
        except Exception:  # one line's failure must not stop the others' monitoring
            logger.exception("monitoring of line %s failed", line.code)
            reports[line.code] = {"line": line.code, "error": "monitoring failed; see the logs"}
    return {"lines": reports}
