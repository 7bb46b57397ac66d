"""Audit samples in `full`: the model decided, an inspector reviews it from the same queue."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from core import live_events
from core.errors import ApplicationError
from inspection import events, selectors, services
from inspection.models import Decision
from inspection.selectors import canary_record
from labeling.models import LabelTask
from tests.factories import (
    DecisionFactory,
    DeploymentFactory,
    PredictionFactory,
    ProductionLineFactory,
    UserFactory,
    station_with_token,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def line():
    return ProductionLineFactory(code="L1", automation_level="full", audit_percent=100)


@pytest.fixture
def ines(line):
    return UserFactory(username="ines", roles=["inspector"], lines=[line])


@pytest.fixture
def ivan(line):
    return UserFactory(username="ivan", roles=["inspector"], lines=[line])


def audit_sample(line, *, verdict="pass", role="production", model_version=None) -> Decision:
    """What capture_ingest writes for an audited model decision in `full`."""
    decision = DecisionFactory(
        capture__station=station_with_token(line=line),
        status="decided",
        verdict=verdict,
        decided_by="model",
        reason="full",
        audit=True,
        audit_status="pending",
        model_verdict=verdict,
    )
    extra = {"model_version": model_version} if model_version else {}
    decision.acting_prediction = PredictionFactory(
        capture=decision.capture, role=role, score=0.1 if verdict == "pass" else 0.9, **extra
    )
    decision.decided_at = decision.capture.received_at
    decision.save()
    return decision


def queue(user):
    return list(selectors.inspector_queue(line_codes=["L1"], user=user, now=timezone.now()))


def test_an_audit_sample_enters_the_queue_and_two_inspectors_never_review_it_both(line, ines, ivan):
    decision = audit_sample(line)
    DecisionFactory(  # a plain model decision is not for humans
        capture__station=decision.capture.station, status="decided", verdict="pass",
        decided_by="model", reason="full",
    )  # fmt: skip
    assert queue(ines) == [decision.capture]
    assert selectors.queue_depth(line_codes=["L1"]) == {"L1": 1}

    services.capture_claim(capture=decision.capture_id, user=ines)
    assert queue(ivan) == []
    with pytest.raises(ApplicationError, match="Another inspector") as refused:
        services.verdict_record(capture_id=decision.capture_id, user=ivan, verdict="pass")
    assert refused.value.status == 409
    services.capture_release(capture=decision.capture_id, user=ines)
    assert queue(ivan) == [decision.capture]


def test_confirming_keeps_the_verdict_and_counts_as_agreement(
    line, ines, django_capture_on_commit_callbacks
):
    decision = audit_sample(line, verdict="fail")
    services.capture_claim(capture=decision.capture_id, user=ines)
    with django_capture_on_commit_callbacks() as callbacks:
        services.verdict_record(capture_id=decision.capture_id, user=ines, verdict="fail")
    decision.refresh_from_db()
    assert (decision.audit_status, decision.audit_verdict, decision.audited_by) == (
        "confirmed",
        "fail",
        ines,
    )
    assert (decision.verdict, decision.decided_by, decision.overrode_model) == (
        "fail",
        "model",
        False,
    )
    assert len(callbacks) == 1 and queue(ines) == []
    assert not LabelTask.objects.filter(source="override").exists()
    agreement = selectors.line_agreement(line=line)
    assert (agreement.compared, agreement.agreeing, agreement.override_percent) == (1, 1, 0.0)
    assert (
        selectors.inspector_shift_stats(
            user=ines, since=timezone.now() - timedelta(hours=1)
        ).decisions
        == 1
    )

    # Finished: no second review, no claim.
    for call in (
        lambda: services.verdict_record(capture_id=decision.capture_id, user=ines, verdict="pass"),
        lambda: services.capture_claim(capture=decision.capture_id, user=ines),
    ):
        with pytest.raises(ApplicationError, match="already reviewed") as refused:
            call()
        assert (refused.value.status, refused.value.code) == (409, "already_audited")


def test_overriding_corrects_the_station_and_opens_a_label_task(
    line, ines, monkeypatch, django_capture_on_commit_callbacks
):
    decision = audit_sample(line, verdict="pass")
    sent = []
    monkeypatch.setattr(live_events, "events_send", sent.extend)
    services.capture_claim(capture=decision.capture_id, user=ines)
    with django_capture_on_commit_callbacks(execute=True):
        services.verdict_record(
            capture_id=decision.capture_id,
            user=ines,
            verdict="fail",
            regions=[{"box": [10, 10, 40, 30], "defect_type": "scratch"}],
        )
    groups = {group: message for group, message in sent}
    station = events.station_group(decision.capture.station_id)
    # The station socket turns decision.reverted into {"type": "correction"}; the long poll too.
    correction = groups[station]
    assert correction["type"] == "decision.reverted"
    assert groups[events.capture_group(decision.capture_id)] == correction
    assert (correction["capture"]["verdict"], correction["capture"]["decided_by"]) == (
        "fail",
        "human",
    )
    assert correction["capture"]["audit_status"] == "overridden"
    assert groups["line.L1"]["type"] == "decision.made"  # off the inspectors' queues

    decision.refresh_from_db()
    assert (decision.verdict, decision.decided_by, decision.decided_by_user) == (
        "fail",
        "human",
        ines,
    )
    assert (decision.audit_status, decision.overrode_model) == ("overridden", True)
    task = LabelTask.objects.get(source="override")
    assert task.pre_verdict == "fail"
    assert [region["box"] for region in task.pre_annotation] == [[10, 10, 40, 30]]
    assert selectors.line_agreement(line=line).override_percent == 100.0


def test_undoing_an_override_puts_the_models_verdict_back(line, ines):
    decision = audit_sample(line, verdict="pass")
    services.capture_claim(capture=decision.capture_id, user=ines)
    services.verdict_record(capture_id=decision.capture_id, user=ines, verdict="fail")
    services.verdict_undo(capture=decision.capture_id, user=ines)
    decision.refresh_from_db()
    assert (decision.verdict, decision.decided_by, decision.audit_status) == (
        "pass",
        "model",
        "pending",
    )
    assert decision.decided_at == decision.capture.received_at and decision.claimed_by == ines
    assert not LabelTask.objects.filter(source="override").exists()


def test_audit_reviews_count_in_the_canary_override_rate(line, ines):
    canary = DeploymentFactory(line=line, role="canary", canary_percent=100)
    canary.deployed_at = timezone.now() - timedelta(hours=1)
    canary.save()
    for verdict in ("pass", "fail"):
        decision = audit_sample(line, role="canary", model_version=canary.model_version)
        services.verdict_record(capture_id=decision.capture_id, user=ines, verdict=verdict)
    audit_sample(line, role="canary", model_version=canary.model_version)  # not reviewed yet
    record = canary_record(deployment=canary)
    assert (record.compared, record.overrides) == (2, 1)


def test_verdict_api_reviews_an_audit_sample_and_answers_409_once_done(line, ines, ivan):
    decision = audit_sample(line, verdict="pass")
    plain = DecisionFactory(
        capture__station=decision.capture.station, status="decided", verdict="pass",
        decided_by="model", reason="full",
    )  # fmt: skip
    client = APIClient()
    client.force_authenticate(ines)
    [item] = client.get("/api/v1/queue", {"lines": "L1"}).json()["items"]
    assert (item["id"], item["audit_status"], item["verdict"]) == (
        str(decision.capture_id),
        "pending",
        "pass",
    )
    assert item["model"]["verdict"] == "pass"
    assert client.post(f"/api/v1/captures/{decision.capture_id}/claim").status_code == 200

    response = client.post(
        f"/api/v1/captures/{decision.capture_id}/verdict", {"verdict": "pass"}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["verdict"], body["audit_status"]) == (
        "decided",
        "pass",
        "confirmed",
    )

    again = client.post(
        f"/api/v1/captures/{decision.capture_id}/verdict", {"verdict": "fail"}, format="json"
    )
    assert (again.status_code, again.json()["error"]["code"]) == (409, "already_audited")
    other = APIClient()
    other.force_authenticate(ivan)
    plain_response = other.post(
        f"/api/v1/captures/{plain.capture_id}/verdict", {"verdict": "fail"}, format="json"
    )
    assert (plain_response.status_code, plain_response.json()["error"]["code"]) == (
        409,
        "already_decided",
    )
