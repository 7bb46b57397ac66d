"""The pure signals: yield's p-chart judges the newest complete hour with the centre's own
error in its limits; no crash on a line that never failed a phone."""

import numpy as np

from monitoring import detectors


def hours(rates, n=3600, seed=0):
    rng = np.random.default_rng(seed)
    defects = [int(rng.binomial(n, r)) for r in rates]
    return detectors.YieldSamples(
        hours=[f"2026-12-01T{h:02d}:00:00+00:00" for h in range(len(rates))],
        defects=defects,
        totals=[n] * len(rates),
        baseline_rate=0.08,
        baseline_count=500,
    )


def test_stable_days_stay_in_control():
    statuses = [detectors.yield_signal(hours([0.08] * 24, seed=s)).status for s in range(200)]
    assert statuses.count("drifted") <= 2  # ~3 sigma on one hour: rare, never a day's alert


def test_a_bad_hour_is_out_of_control_at_once():
    result = detectors.yield_signal(hours([0.08] * 22 + [0.16, 0.08]))  # the last is filling
    assert result.status == "drifted"
    assert "out of control in the hour of 22:00" in result.summary


def test_a_line_that_never_failed_a_phone_still_has_a_chart():
    samples = hours([0.0] * 5)
    samples = detectors.YieldSamples(**{**samples.__dict__, "baseline_rate": 0.0})
    result = detectors.yield_signal(samples)
    assert result.status in ("ok", "insufficient_data")
