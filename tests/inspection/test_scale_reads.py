"""The reads rewritten for millions of captures answer what they answered before: the shadow
model's agreement per hour, and the line's agreement over its newest judged decisions."""

from datetime import timedelta

import pytest
from django.utils import timezone

from inspection import selectors
from tests.factories import (
    CaptureFactory,
    DecisionFactory,
    ModelVersionFactory,
    PredictionFactory,
    ProductionLineFactory,
    StationFactory,
)

pytestmark = pytest.mark.django_db


def shadowed_capture(station, shadow_model, at, *, shadow, acting=None, human=None, audit=""):
    capture = CaptureFactory(station=station, received_at=at)
    prediction = None
    if acting is not None:
        prediction = PredictionFactory(
            capture=capture, role="production", score=0.9 if acting == "fail" else 0.1
        )
    final = human or acting or ""
    DecisionFactory(
        capture=capture,
        status="decided" if final else "pending",
        verdict=final,
        decided_by="human" if human else ("model" if final else ""),
        decided_at=at if final else None,
        acting_prediction=prediction,
        audit_status=audit,
    )
    PredictionFactory(
        capture=capture,
        role="shadow",
        model_version=shadow_model,
        score={"pass": 0.1, "fail": 0.9, "uncertain": 0.5}[shadow],
    )
    return capture


def test_shadow_agreement_counts_per_hour_against_the_model_and_the_inspectors():
    line = ProductionLineFactory(code="L1")
    station = StationFactory(line=line)
    shadow = ModelVersionFactory()
    hour = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    late = hour + timedelta(hours=1, minutes=5)
    shadowed_capture(station, shadow, hour + timedelta(minutes=1), shadow="pass", acting="pass")
    shadowed_capture(station, shadow, hour + timedelta(minutes=2), shadow="fail", acting="pass")
    shadowed_capture(
        station, shadow, hour + timedelta(minutes=3), shadow="fail", acting="pass", human="fail"
    )
    shadowed_capture(station, shadow, late, shadow="uncertain", acting="fail", human="fail")
    # A confirmed audit review counts as the inspectors' verdict too.
    shadowed_capture(station, shadow, late, shadow="pass", acting="pass", audit="confirmed")
    shadowed_capture(station, shadow, late, shadow="fail")  # no model acted, none decided
    other = StationFactory(line=ProductionLineFactory(code="L2"))
    shadowed_capture(other, shadow, late, shadow="pass", acting="pass")  # another line

    newest, oldest = selectors.shadow_agreement(line=line, model_version=shadow)
    assert (newest.start, oldest.start) == (hour + timedelta(hours=1), hour)
    # (shadow predictions, compared with production, agreeing, compared with humans, agreeing)
    assert (
        oldest.shadow_predictions,
        oldest.compared_with_production,
        oldest.agree_with_production,
        oldest.compared_with_humans,
        oldest.agree_with_humans,
    ) == (3, 3, 1, 1, 1)
    assert (
        newest.shadow_predictions,
        newest.compared_with_production,
        newest.agree_with_production,
        newest.compared_with_humans,
        newest.agree_with_humans,
    ) == (3, 2, 1, 1, 1)
    # Only the newest `last` shadow predictions count.
    assert sum(b.shadow_predictions for b in selectors.shadow_agreement(
        line=line, model_version=shadow, last=2
    )) == 2  # fmt: skip


def test_line_agreement_reads_the_newest_judged_decisions_in_the_order_they_were_judged():
    line = ProductionLineFactory(code="L1", automation_level="assisted")
    now = timezone.now()
    for minutes, overrode in ((50, True), (40, True), (30, False), (20, False)):
        DecisionFactory(
            capture=CaptureFactory(station=StationFactory(line=line)),
            status="decided",
            verdict="pass",
            decided_by="human",
            decided_at=now - timedelta(minutes=minutes),
            reason="assisted",
            model_verdict="fail" if overrode else "pass",
            overrode_model=overrode,
        )
    # A model decision long ago, audited just now: judged last, so the newest of all.
    DecisionFactory(
        capture=CaptureFactory(station=StationFactory(line=line)),
        status="decided",
        verdict="fail",
        decided_by="human",
        decided_at=now - timedelta(hours=5),
        audited_at=now,
        audit_status="overridden",
        reason="full",
        model_verdict="pass",
        overrode_model=True,
    )
    newest_three = selectors.line_agreement(line=line, last=3)
    assert (newest_three.compared, newest_three.agreeing) == (3, 2)
    everything = selectors.line_agreement(line=line)
    assert (everything.compared, everything.agreeing) == (5, 2)
    rail = selectors.line_agreement(line=line, last=10, reasons={"assisted", "shadow"})
    assert (rail.compared, rail.agreeing) == (4, 2)


def live_captures() -> int:
    import gc

    from inspection.models import Capture

    # type(), not isinstance(): the heap holds weak proxies, and a dead one raises on isinstance.
    return sum(1 for obj in gc.get_objects() if type(obj) is Capture)


@pytest.mark.parametrize("url", ["/api/v1/queue?lines=L1", "/api/v1/captures?line=L1"])
def test_a_page_of_captures_is_freed_without_the_garbage_collector(url):
    """Pages of 200 captures left ~9,000 objects in reference cycles (a capture and its
    decision hold each other, so do prefetched predictions): a full collection every few pages
    cost 40-100 ms, the inspector queue's p95 on a million captures. Once answered, nothing of
    the page may wait for the collector."""
    import gc

    from rest_framework.test import APIClient

    from tests.factories import UserFactory

    line = ProductionLineFactory(code="L1", automation_level="assisted")
    station = StationFactory(line=line)
    for _ in range(5):
        capture = CaptureFactory(station=station, received_at=timezone.now())
        prediction = PredictionFactory(capture=capture, role="production", score=0.5)
        DecisionFactory(capture=capture, status="pending", acting_prediction=prediction)
    client = APIClient()
    client.force_authenticate(UserFactory(username="ines", roles=["inspector"], lines=[line]))
    client.get(url)  # warm: URL resolvers, serializers
    gc.collect()
    gc.disable()
    try:
        before = live_captures()
        response = client.get(url)
        assert response.status_code == 200, response.content
        assert len(response.json().get("items", response.json().get("results"))) == 5
        del response
        assert live_captures() == before
    finally:
        gc.enable()
