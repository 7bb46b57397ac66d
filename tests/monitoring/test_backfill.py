"""Rows loaded into the past (seed_scale, an import) after the job ran: the next run sees
them, although no time moved, and counts the settled hours it kept again."""

from datetime import timedelta

import pytest

from inspection.models import Capture, Decision, Prediction
from monitoring import selectors, services
from monitoring.models import LineMonitorState, SignalEvaluation
from tests.monitoring.conftest import reference_metadata

pytestmark = pytest.mark.django_db


def hour_counts(report: dict) -> dict[str, tuple[int, int]]:
    periods = report["signals"]["yield"]["p_chart"]["periods"]
    return {p["hour"]: (p["total"], p["defects"]) for p in periods}


def backfill_failed(sim, hour, count: int) -> None:
    """`count` failed phones decided by the model inside `hour`, written now (bulk)."""
    captures, predictions, decisions = [], [], []
    for index in range(count):
        at = hour + timedelta(minutes=10, seconds=index)
        capture = Capture(
            line=sim.line, station=sim.station, idempotency_key=f"backfill-{index}",
            image="captures/none.jpg", image_sha256="0" * 64, image_bytes=1, image_format="jpg",
            width=64, height=48, image_stats={}, received_at=at,
        )  # fmt: skip
        prediction = Prediction(
            capture=capture, model_version=sim.model_version, role="production", score=0.95,
            verdict="fail", latency_ms=1.0,
        )  # fmt: skip
        decisions.append(
            Decision(
                capture=capture,
                line=sim.line,
                status="decided",
                verdict="fail",
                decided_by="model",
                decided_at=at,
                reason="confident",
                acting_prediction=prediction,
                model_verdict="fail",
            )  # fmt: skip
        )
        captures.append(capture)
        predictions.append(prediction)
    Capture.objects.bulk_create(captures)
    Prediction.objects.bulk_create(predictions)
    Decision.objects.bulk_create(decisions)


def test_rows_loaded_into_settled_hours_are_counted_by_the_next_run(simulated_line):
    sim = simulated_line(metadata=reference_metadata())
    sim.captures(600, seconds_apart=30)  # five hours of production
    before = services.line_check(line=sim.line)
    newest = Capture.objects.order_by("-received_at").first().received_at
    settled = (newest - timedelta(hours=4)).replace(minute=0, second=0, microsecond=0)
    total, defects = hour_counts(before)[settled.isoformat()]
    assert total > 0
    evaluations = SignalEvaluation.objects.count()

    backfill_failed(sim, settled, 40)  # older than anything new: no time moved
    after = services.line_check(line=sim.line)  # the beat job, not forced

    assert SignalEvaluation.objects.count() == evaluations + 4  # it did not skip the line
    assert hour_counts(after)[settled.isoformat()] == (total + 40, defects + 40)
    state = LineMonitorState.objects.get(line=sim.line)
    assert state.decision_id_through == Decision.objects.order_by("-pk").first().pk
    # Nothing new since: the next run skips again, and the page reads the stored report.
    services.line_check(line=sim.line)
    assert SignalEvaluation.objects.count() == evaluations + 4
    assert hour_counts(services.line_report(line=sim.line)) == hour_counts(after)


def test_live_traffic_keeps_the_settled_hours_it_counted(simulated_line):
    sim = simulated_line(metadata=reference_metadata())
    sim.captures(600, seconds_apart=30)
    services.line_check(line=sim.line)
    sim.captures(60, seconds_apart=30)  # the next minutes of the line, as they arrive
    state = LineMonitorState.objects.get(line=sim.line)
    newest = Capture.objects.order_by("-received_at").first().received_at
    assert not selectors.decisions_backfilled(
        line=sim.line,
        after_id=state.decision_id_through,
        before=newest - selectors.HOURS_SETTLE_AFTER,
    )
