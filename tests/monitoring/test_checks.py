"""The monitoring job on simulated lines: calm when stable, each signal when its cause
happens, alerts with hysteresis, idempotent runs."""

import pytest

from monitoring import services
from monitoring.models import Alert, LineMonitorState, Reference, SignalEvaluation
from tests.monitoring.conftest import reference_metadata

pytestmark = pytest.mark.django_db


def run(line, every: int, sim, **kwargs):
    """Captures arriving in batches of `every`, the job running after each batch."""
    sim.captures(every, **kwargs)
    return services.line_check(line=line)


def test_a_stable_line_stays_calm_and_opens_no_alert(simulated_line):
    sim = simulated_line(metadata=reference_metadata())
    reports = [run(sim.line, 60, sim, seconds_apart=20) for _ in range(12)]  # over 4 hours
    last = reports[-1]["signals"]
    assert {name: s["status"] for name, s in last.items()} == {
        "data_drift": "ok", "prediction_drift": "ok", "concept_drift": "ok", "yield": "ok",
    }  # fmt: skip
    assert Alert.objects.count() == 0
    assert reports[-1]["reference"]["kind"] == "training_data"


def test_a_darker_line_drifts_opens_an_alert_and_closes_it_after_recovery(simulated_line):
    sim = simulated_line(metadata=reference_metadata())
    for _ in range(9):  # the model's first 500 captures become the line's normal
        run(sim.line, 60, sim)
    statuses = [
        run(sim.line, 60, sim, brightness_factor=0.8)["signals"]["data_drift"] for _ in range(4)
    ]
    assert statuses[-1]["status"] == "drifted"
    assert statuses[-1]["most_moved"] == "brightness"
    assert "brightness down" in statuses[-1]["summary"].lower()
    alert = Alert.objects.get(signal="data_drift")
    assert alert.is_open and alert.severity == "drifted"
    for _ in range(8):
        run(sim.line, 60, sim)
    alert.refresh_from_db()
    assert not alert.is_open and alert.closed_at is not None


def test_the_job_is_idempotent_when_nothing_new_arrived(simulated_line):
    sim = simulated_line(metadata=reference_metadata())
    run(sim.line, 100, sim)
    first = SignalEvaluation.objects.count()
    state = LineMonitorState.objects.get(line=sim.line).alert_states
    services.line_check(line=sim.line)
    services.lines_check()
    assert SignalEvaluation.objects.count() == first == 4
    assert LineMonitorState.objects.get(line=sim.line).alert_states == state


def test_without_training_statistics_the_first_captures_become_the_reference(simulated_line):
    sim = simulated_line()
    report = run(sim.line, 100, sim)
    assert report["signals"]["data_drift"]["status"] == "insufficient_data"
    report = run(sim.line, 450, sim)
    assert report["reference"]["kind"] == "first_captures"
    assert Reference.objects.get(line=sim.line, is_active=True).count == 500


def test_more_overrides_are_concept_drift_with_the_counts_it_rests_on(simulated_line):
    sim = simulated_line(metadata=reference_metadata())
    run(sim.line, 1000, sim, override_rate=0.02, judged_share=1.0)
    report = run(sim.line, 200, sim, override_rate=0.12, judged_share=1.0)
    concept = report["signals"]["concept_drift"]
    assert concept["status"] == "drifted"
    overrides = concept["overrides"]
    # The newest 200 against the model's first 1,000 (never the same decisions twice).
    assert overrides["recent_total"] == 200 and overrides["reference_total"] == 1000
    assert overrides["test"] == "fisher_exact"


def test_an_empty_line_has_insufficient_data_everywhere(simulated_line):
    sim = simulated_line()
    report = services.line_check(line=sim.line)
    assert {s["status"] for s in report["signals"].values()} == {"insufficient_data"}
