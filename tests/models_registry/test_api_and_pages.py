"""The registry API and pages: supervisors only, refusals as 4xx JSON in words, pages render."""

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from models_registry import services
from models_registry.models import Evaluation, JobStatus, RolloutEvent, TrainingRun
from tests.factories import ModelVersionFactory, ProductionLineFactory, UserFactory

pytestmark = pytest.mark.django_db
BENCH = "synthetic:48:1234:256x144"


def evaluated(version, auroc):
    Evaluation.objects.create(
        model_version=version, benchmark=BENCH, benchmark_label="48 synthetic phones",
        status=JobStatus.SUCCEEDED, finished_at=timezone.now(),
        metrics={"auroc": auroc, "f1": 0.9, "recall": 0.9, "precision": 0.9,
                 "confusion_matrix": {"tp": 20, "fp": 1, "tn": 22, "fn": 5}},
        slices={"defect_type": [{"value": "scratch", "n": 10, "recall": 0.8,
                                 "false_negatives": 2, "false_positives": 0}]},
        worst={"false_negatives": [], "false_positives": [], "false_negative_count": 0,
               "false_positive_count": 0},
    )  # fmt: skip
    return version


@pytest.fixture
def client():
    client = APIClient()
    client.force_authenticate(UserFactory(roles=["supervisor"]))
    return client


@pytest.fixture
def line_with_production():
    line = ProductionLineFactory(code="L1")
    production = evaluated(ModelVersionFactory(name="scratchnet"), 0.95)
    services.rollout_promote(line=line, model_version=production, user=None)
    return line, production


def test_inspectors_may_not_use_the_registry():
    client = APIClient()
    client.force_authenticate(UserFactory(roles=["inspector"]))
    assert client.get("/api/v1/models/versions").status_code == 403
    assert client.post("/api/v1/models/training-runs", {}, format="json").status_code == 403


def test_rollout_through_the_api(client, line_with_production):
    line, production = line_with_production
    candidate = evaluated(ModelVersionFactory(name="scratchnet"), 0.96)
    response = client.post(
        "/api/v1/models/lines/L1/shadow", {"model_version": candidate.pk}, format="json"
    )
    assert response.status_code == 200
    assert {d["role"] for d in response.json()["deployments"]} == {"production", "shadow"}
    response = client.post(
        "/api/v1/models/lines/L1/canary",
        {"model_version": candidate.pk, "percent": 5, "max_override_percent": 8},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert (
        client.post("/api/v1/models/lines/L1/canary/ramp", {}, format="json").json()["deployments"][
            0
        ]["canary_percent"]
        == 25
    )
    assert client.delete("/api/v1/models/lines/L1/canary").status_code == 200
    response = client.post(
        "/api/v1/models/lines/L1/promote", {"model_version": candidate.pk}, format="json"
    )
    assert response.status_code == 200
    response = client.post("/api/v1/models/lines/L1/rollback", {"reason": "test"}, format="json")
    assert response.status_code == 200
    assert response.json()["deployments"][0]["model_version"] == production.pk
    assert RolloutEvent.objects.filter(line=line).count() == 7  # 1 setup + 6 here


def test_the_gate_refusal_is_a_409_that_says_why(client, line_with_production):
    worse = evaluated(ModelVersionFactory(), 0.80)
    response = client.post(
        "/api/v1/models/lines/L1/promote", {"model_version": worse.pk}, format="json"
    )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "gate" and "worse than the production model" in error["message"]
    gate = client.get(f"/api/v1/models/lines/L1/gate?model_version={worse.pk}").json()
    assert gate["ok"] is False and "auroc 0.800 vs 0.950" in gate["reason"]


def test_start_and_cancel_a_run_through_the_api(client, line_with_production, monkeypatch):
    from models_registry import tasks

    sent = []
    monkeypatch.setattr(
        tasks.training_run_execute, "apply_async", lambda **kwargs: sent.append(kwargs)
    )
    response = client.post(
        "/api/v1/models/training-runs",
        {"data_source": "synthetic", "synthetic_count": 16, "preset": "smoke", "line": "L1",
         "benchmark": BENCH},
        format="json",
    )  # fmt: skip
    assert response.status_code == 201, response.json()
    run = TrainingRun.objects.get(pk=response.json()["id"])
    assert run.status == "queued" and run.config["max_steps"] == 2
    response = client.post(f"/api/v1/models/training-runs/{run.pk}/cancel")
    assert response.json()["status"] == "cancelled"
    assert client.post(f"/api/v1/models/training-runs/{run.pk}/cancel").status_code == 409
    bad = client.post(
        "/api/v1/models/training-runs", {"data_source": "dataset"}, format="json"
    ).json()
    assert bad["error"]["message"] == "Choose a dataset version to train on."


def test_pages_render_for_supervisors(client, line_with_production):
    line, production = line_with_production
    candidate = evaluated(ModelVersionFactory(name="scratchnet", parent=production), 0.90)
    TrainingRun.objects.create(data_source="synthetic", synthetic_count=16, line=line)
    web = __import__("django.test", fromlist=["Client"]).Client()
    web.force_login(UserFactory(roles=["supervisor"]))
    index = web.get("/models/")
    assert index.status_code == 200
    assert "Start training" in index.content.decode() and candidate.label in index.content.decode()
    page = web.get(f"/models/{candidate.pk}/").content.decode()
    assert "Refused:" in page and "worse than the production model" in page
    assert "Confusion matrix" in page and "by defect type" in page
    run = TrainingRun.objects.first()
    assert "Cancel run" in web.get(f"/models/runs/{run.pk}/").content.decode()
    inspector = __import__("django.test", fromlist=["Client"]).Client()
    inspector.force_login(UserFactory(roles=["inspector"]))
    assert inspector.get("/models/").status_code == 403
