"""seed_scale: synthetic traffic in bulk, as the capture path and the inspectors leave it."""

from collections import Counter

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from core import blobs
from core.models import ProductionLine
from inspection import policy
from inspection.models import AuditStatus, Capture, Decision, Prediction
from labeling.models import Annotation, LabelTask

pytestmark = pytest.mark.django_db


def test_refuses_with_debug_off_unless_forced(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG is off"):
        call_command("seed_scale", "--captures", "10")
    assert not Capture.objects.exists()
    settings.DEBUG = True
    call_command("seed_scale", "--captures", "10", "--lines", "1")
    assert Capture.objects.count() == 10
    # A second run adds to the first (same line, stations and users; new captures).
    call_command("seed_scale", "--captures", "10", "--lines", "1")
    assert Capture.objects.count() == Decision.objects.count() == 20
    assert ProductionLine.objects.count() == 1


@pytest.fixture
def loaded(capsys):
    call_command(
        "seed_scale",
        "--captures",
        # A thousand: with 500 the last three days (open label tasks) once held no task at all.
        "1000",
        "--lines",
        "2",
        "--pending",
        "5",
        "--days",
        "10",
        "--force",
    )
    return capsys.readouterr().out


def test_loads_each_kind_of_row(loaded):
    lines = {line.code: line for line in ProductionLine.objects.all()}
    assert {code: line.automation_level for code, line in lines.items()} == {
        "SC1": "partial",
        "SC2": "full",
    }
    assert Capture.objects.count() == Decision.objects.count() == 1000
    assert Prediction.objects.filter(role="production").count() == 1000
    for line in lines.values():
        assert line.stations.count() == 3 and line.inspectors.count() == 2
        assert line.deployments.get(role="production").model_version.name == "scale-net"
    # Spread over days and hours, on every station of each line.
    times = list(Capture.objects.values_list("received_at", flat=True))
    assert (max(times) - min(times)).days >= 8
    assert len({t.hour for t in times}) >= 12
    assert Capture.objects.values("station").distinct().count() == 6
    # The images are real files in the blob store, shared by content.
    names = set(Capture.objects.values_list("image", flat=True))
    assert 2 <= len(names) <= 8 and all(blobs.blob_exists(name) for name in names)
    assert "Loaded" in loaded and "rows/s" in loaded and "SC1" in loaded


def test_decisions_agree_with_predictions_and_levels(loaded):
    counts = Counter()
    for decision in Decision.objects.select_related("capture__line", "acting_prediction"):
        line = decision.capture.line
        prediction = decision.acting_prediction
        assert prediction is not None and prediction.role == "production"
        assert decision.line_id == line.pk
        routing = policy.decide(
            policy.LineSettings(
                automation_level=line.automation_level,
                pass_threshold=line.pass_threshold,
                fail_threshold=line.fail_threshold,
                audit_percent=line.audit_percent,
            ),
            [policy.ModelScore("production", prediction.score)],
            decision.capture_id,
        )
        assert decision.reason == routing.reason
        assert decision.model_verdict == prediction.verdict == routing.model_verdict
        assert decision.model_shown == routing.show_model and decision.audit == routing.audit
        if routing.decided_by == "model" and decision.audit_status != AuditStatus.OVERRIDDEN:
            assert (decision.status, decision.verdict) == ("decided", routing.verdict)
            assert (
                decision.decided_by == "model"
                and decision.decided_at == decision.capture.received_at
            )
        elif decision.status == "pending":
            assert decision.verdict == "" and decision.decided_at is None
        else:
            assert decision.decided_by == "human" and decision.decided_by_user_id is not None
            assert decision.decided_at >= decision.capture.received_at
            assert line.inspectors.filter(pk=decision.decided_by_user_id).exists()
        counts[(line.code, decision.status, decision.decided_by, decision.audit_status)] += 1
    # The newest human-routed captures of the partial line wait for an inspector.
    assert counts[("SC1", "pending", "", "")] == 5
    assert counts[("SC1", "decided", "model", "")] > counts[("SC1", "decided", "human", "")] > 0
    # The full line: the model decides everything; its audit samples are reviewed or waiting.
    assert counts[("SC2", "pending", "", "")] == 0
    audits = Decision.objects.filter(line__code="SC2", audit=True)
    assert audits.filter(audit_status=AuditStatus.PENDING).count() == min(1, audits.count())


def test_label_tasks_follow_the_decisions(loaded):
    by_source = Counter(LabelTask.objects.values_list("source", flat=True))
    assert (
        by_source["uncertain"]
        == Decision.objects.filter(reason="uncertain", status="decided").count()
    )
    assert by_source["audit"] == Decision.objects.filter(audit=True).count()
    assert by_source["override"] == Decision.objects.filter(overrode_model=True).count()
    assert sum(by_source.values()) == LabelTask.objects.count() > 0
    # The older tasks were labeled and accepted; the recent ones are open in the queue.
    done = LabelTask.objects.filter(status="done")
    assert done.count() == Annotation.objects.filter(status="accepted").count() > 0
    assert not done.filter(accepted_annotation__isnull=True).exists()
    assert LabelTask.objects.filter(status="open").exists()
    # Shadow predictions on the first line's recent captures only.
    shadow = Prediction.objects.filter(role="shadow")
    assert shadow.exists() and not shadow.exclude(capture__line__code="SC1").exists()


def test_an_assigned_inspector_sees_the_pending_queue(loaded):
    from django.contrib.auth.models import User

    line = ProductionLine.objects.get(code="SC1")
    client = APIClient()
    client.force_authenticate(User.objects.get(username="scale-inspector-1"))
    body = client.get("/api/v1/queue?lines=SC1").json()
    assert body["lines"][0]["queue_depth"] == 5
    # A few are claimed by a colleague right now: hidden from this inspector.
    assert 0 < len(body["items"]) <= 5
    image = client.get(f"/api/v1/captures/{body['items'][0]['id']}/image")
    assert image.status_code == 200 and line.pk
