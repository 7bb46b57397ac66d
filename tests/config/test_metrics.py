"""/metrics: Prometheus text, protected by METRICS_TOKEN (or an address allow-list), with the
figures an operator alerts on."""

import io
import ipaddress
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from config import metrics as metrics_view
from models_registry import serving
from models_registry.models import TrainingRun
from monitoring.models import LineMonitorState
from tests.factories import (
    DecisionFactory,
    DeploymentFactory,
    ProductionLineFactory,
    UserFactory,
    image_bytes,
    station_with_token,
)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


def post_capture(station, *, data: bytes | None = None):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {station.token}")
    image = io.BytesIO(image_bytes() if data is None else data)
    image.name = "phone.jpg"
    payload = {"image": image, "line": station.line.code, "idempotency_key": "k-1"}
    return client.post("/api/v1/captures", payload, format="multipart")


def scrape(**headers) -> dict[tuple[str, tuple], float]:
    response = Client().get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_are_prometheus_text_without_a_token_when_none_is_set(settings):
    settings.METRICS_TOKEN = ""
    samples = scrape()
    assert samples[("inspection_metrics_database_up", ())] == 1
    assert any(name == "process_cpu_seconds_total" for name, _ in samples)


def test_the_token_is_required_when_set(settings):
    settings.METRICS_TOKEN = "s3cret-token"
    missing = Client().get("/metrics")
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"].startswith("Bearer")
    assert "Bearer" in missing.json()["error"]["message"]
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Token s3cret-token").status_code == 401
    assert scrape(HTTP_AUTHORIZATION="Bearer s3cret-token")


def test_an_address_allow_list_refuses_other_clients(settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = [ipaddress.ip_network("10.0.0.0/8")]
    assert Client().get("/metrics").status_code == 403  # the test client is 127.0.0.1
    settings.METRICS_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    assert scrape()


def test_a_capture_counts_by_line_status_verdict_and_inference_time(fake_models):
    line = ProductionLineFactory(code="M1", automation_level="partial")
    station = station_with_token(line=line)
    DeploymentFactory(line=line, role="production")  # the fake model scores 0.1: a pass
    captures = value("inspection_captures_total", line="M1", status="decided")
    verdicts = value("inspection_verdicts_total", line="M1", verdict="pass", decided_by="model")
    inferences = value("inspection_inference_seconds_count", line="M1", role="production")

    assert post_capture(station).status_code == 201

    assert value("inspection_captures_total", line="M1", status="decided") == captures + 1
    assert (
        value("inspection_verdicts_total", line="M1", verdict="pass", decided_by="model")
        == verdicts + 1
    )
    assert value("inspection_inference_seconds_count", line="M1", role="production") == (
        inferences + 1
    )
    samples = scrape()
    assert samples[("inspection_captures_total", (("line", "M1"), ("status", "decided")))] >= 1


def test_a_rejected_capture_counts_nothing():
    line = ProductionLineFactory(code="M2", automation_level="manual")
    station = station_with_token(line=line)
    before = value("inspection_captures_total", line="M2", status="pending")
    assert post_capture(station, data=b"not an image").status_code == 415
    assert value("inspection_captures_total", line="M2", status="pending") == before


def test_a_human_verdict_counts_with_its_decision_time():
    line = ProductionLineFactory(code="M3")
    decision = DecisionFactory(
        capture__station=station_with_token(line=line),
        capture__received_at=timezone.now() - timedelta(seconds=42),
    )
    verdicts = value("inspection_verdicts_total", line="M3", verdict="fail", decided_by="human")
    timed = value("inspection_human_decision_seconds_count", line="M3")
    slow = value("inspection_human_decision_seconds_bucket", line="M3", le="30.0")

    client = APIClient()
    client.force_authenticate(UserFactory(roles=["inspector"], lines=[line]))
    url = f"/api/v1/captures/{decision.capture_id}/verdict"
    assert client.post(url, {"verdict": "fail"}, format="json").status_code == 200

    assert (
        value("inspection_verdicts_total", line="M3", verdict="fail", decided_by="human")
        == verdicts + 1
    )
    assert value("inspection_human_decision_seconds_count", line="M3") == timed + 1
    # 42 s from arrival to verdict: above the 30 s bucket, within the 60 s one.
    assert value("inspection_human_decision_seconds_bucket", line="M3", le="30.0") == slow
    assert value("inspection_human_decision_seconds_bucket", line="M3", le="60.0") >= timed + 1


def test_queue_jobs_and_drift_are_read_at_scrape_time():
    line = ProductionLineFactory(code="Q1")
    ProductionLineFactory(code="Q2")
    station = station_with_token(line=line)
    for minutes in (5, 1):
        DecisionFactory(
            capture__station=station,
            capture__received_at=timezone.now() - timedelta(minutes=minutes),
        )
    DecisionFactory(capture__station=station, status="decided", verdict="pass", decided_by="model")
    TrainingRun.objects.create(data_source="synthetic", status="running")
    TrainingRun.objects.create(data_source="synthetic", status="failed")
    LineMonitorState.objects.create(
        line=line,
        evaluated_at=timezone.now(),
        last_report={
            "signals": {
                "data_drift": {"status": "drifted", "summary": "brightness moved"},
                "yield": {"status": "ok"},
            }
        },
    )

    samples = scrape()

    assert samples[("inspection_queue_depth", (("line", "Q1"),))] == 2
    assert samples[("inspection_queue_depth", (("line", "Q2"),))] == 0
    assert 290 < samples[("inspection_queue_oldest_pending_seconds", (("line", "Q1"),))] < 400
    assert samples[("inspection_queue_oldest_pending_seconds", (("line", "Q2"),))] == 0
    jobs = {labels: v for (name, labels), v in samples.items() if name == "inspection_jobs"}
    assert jobs[(("kind", "training_run"), ("status", "running"))] == 1
    assert jobs[(("kind", "training_run"), ("status", "failed"))] == 1
    assert jobs[(("kind", "evaluation"), ("status", "queued"))] == 0

    def drift(signal, status):
        labels = (("line", "Q1"), ("signal", signal), ("status", status))
        return samples[("inspection_drift_status", labels)]

    assert drift("data_drift", "drifted") == 1 and drift("data_drift", "ok") == 0
    assert drift("yield", "ok") == 1
    assert (
        "inspection_drift_status",
        (("line", "Q1"), ("signal", "concept_drift"), ("status", "ok")),
    ) not in samples
    assert samples[("inspection_drift_evaluated_timestamp_seconds", (("line", "Q1"),))] > 0


def test_the_process_figures_still_answer_when_the_database_is_down(monkeypatch):
    def down(*args, **kwargs):
        raise connection.Database.OperationalError("the database is away")

    monkeypatch.setattr(metrics_view, "_queue_metrics", down)
    samples = scrape()
    assert samples[("inspection_metrics_database_up", ())] == 0
    assert not any(name == "inspection_queue_depth" for name, _ in samples)


def test_several_worker_processes_add_up_in_multiprocess_mode(tmp_path):
    """PROMETHEUS_MULTIPROC_DIR: each worker writes its counts there; /metrics sums them."""
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'none.sqlite3'}",
    }
    count = "from core import metrics; metrics.CAPTURES.labels(line='W1', status='decided').inc()"
    for _ in range(2):  # two workers
        subprocess.run([sys.executable, "-c", count], env=env, cwd=ROOT, check=True)
    expose = (
        "import django, json; django.setup(); "
        "from config.metrics import exposition; "
        "from prometheus_client.parser import text_string_to_metric_families as parse; "
        "print(json.dumps([[s.name, s.labels, s.value] for f in parse(exposition().decode()) "
        "for s in f.samples]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", expose], env=env, cwd=ROOT, check=True, capture_output=True
    ).stdout
    samples = json.loads(out.decode().strip().splitlines()[-1])
    assert ["inspection_captures_total", {"line": "W1", "status": "decided"}, 2.0] in samples


def test_models_this_process_could_not_load_are_counted(fake_models):
    deployment = DeploymentFactory(role="production")
    fake_models.break_model(deployment.model_version)
    assert scrape()[("inspection_serving_model_load_errors", ())] == 0
    version = deployment.model_version
    assert not serving.warm(sha256=version.sha256, artifact=version.artifact)
    assert scrape()[("inspection_serving_model_load_errors", ())] == 1
