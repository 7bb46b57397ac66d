"""PostgreSQL: the beat job and the command running at the same moment store one window once."""

import threading

import pytest
from django.db import connection

from monitoring import services
from monitoring.models import LineMonitorState, SignalEvaluation
from monitoring.services import checks
from tests.monitoring.conftest import reference_metadata

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_two_runs_at_once_store_one_evaluation_and_step_alerts_once(
    postgres, simulated_line, monkeypatch
):
    sim = simulated_line(metadata=reference_metadata())
    sim.captures(200)
    # Both runs compute before either stores: the lock on the line's state row decides.
    both_computed = threading.Barrier(2, timeout=20)
    original = checks._report

    def report(*args, **kwargs):
        result = original(*args, **kwargs)
        both_computed.wait()
        return result

    monkeypatch.setattr(checks, "_report", report)
    errors = []

    def run():
        try:
            services.line_check(line=sim.line)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert SignalEvaluation.objects.count() == 4  # one per signal, not two
    states = LineMonitorState.objects.get(line=sim.line).alert_states
    assert all(s["bad_streak"] + s["ok_streak"] <= 1 for s in states.values()), (
        states
    )  # stepped once
