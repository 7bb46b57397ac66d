"""Drift statistics and charts: each against a known distribution or a hand computation, plus
the properties the monitoring job relies on (calm on stable data, fast detection, no flapping).

One file for `vision.drift_statistics` and `vision.drift_charts`, which share their results.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from scipy import optimize, stats
from scipy.spatial import distance

from vision.drift_charts import (
    AlertState,
    alert_step,
    cusum,
    ewma,
    p_chart,
    pareto,
    proportion_shift,
)
from vision.drift_statistics import (
    Status,
    embedding_shift,
    feature_shift,
    logistic_fit,
    mmd_rbf,
    multi_feature_shift,
    normal_scores,
    reference_estimate,
)

ALARMS = (Status.WARNING, Status.DRIFTED)


def brightness_like(rng: np.random.Generator, size: int, scale: float = 1.0) -> np.ndarray:
    """Bimodal like synthetic phones' mean luma: 70% of scenes near 42, 30% near 80."""
    dark = rng.random(size) < 0.7
    return scale * np.where(dark, rng.normal(42, 5, size), rng.normal(80, 8, size))


def stable_features(rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
    return {
        "brightness": brightness_like(rng, size),
        "sharpness": rng.lognormal(5.3, 0.8, size),  # skewed, like a Laplacian variance
        "r_g": rng.normal(1.02, 0.027, size),
        "contrast": np.round(rng.normal(40, 3, size)),  # ties, like rounded statistics
    }


# --- feature_shift ---------------------------------------------------------------------------


def test_ks_on_identical_normals_is_calm_and_on_shifted_ones_matches_theory():
    rng = np.random.default_rng(1)
    same = feature_shift(rng.normal(0, 1, 2000), rng.normal(0, 1, 2000))
    assert same.status is Status.OK
    assert same.ks_statistic < 0.06 and same.ks_pvalue > 0.01
    shifted = feature_shift(rng.normal(0, 1, 2000), rng.normal(2, 1, 2000))
    # Two unit normals 2 SD apart: sup |F - G| = 2 * Phi(1) - 1.
    assert shifted.ks_statistic == pytest.approx(2 * stats.norm.cdf(1.0) - 1, abs=0.03)
    assert shifted.shift == pytest.approx(2.0, abs=0.15)
    assert shifted.status is Status.DRIFTED


def test_a_small_shift_in_huge_samples_is_significant_but_not_an_alarm():
    rng = np.random.default_rng(2)
    for sd_shift in (0.1, 0.4):  # D ~0.04 and ~0.16, under the 0.25 of a warning
        result = feature_shift(rng.normal(0, 1, 20000), rng.normal(sd_shift, 1, 20000))
        assert result.ks_pvalue < 1e-6  # "significant"...
        assert result.status is Status.OK  # ...and below the effect threshold


def test_a_large_gap_between_small_samples_is_not_an_alarm_without_significance():
    rng = np.random.default_rng(22)
    result = feature_shift(rng.normal(0, 1, 30), rng.normal(0.6, 1, 30))
    assert result.ks_statistic >= 0.25 and result.ks_pvalue > 1e-4
    assert result.status is Status.OK


def test_constant_reference_gets_a_floored_scale_not_a_division_by_zero():
    flat = feature_shift([5.0] * 50, [5.0] * 50)
    assert flat.status is Status.OK and flat.shift == 0.0
    moved = feature_shift([5.0] * 50, [5.5] * 50)
    assert moved.status is Status.DRIFTED
    assert math.isfinite(moved.shift) and moved.reference_scale == pytest.approx(0.005)
    json.dumps(moved.to_dict())


def test_feature_shift_reports_insufficient_data_below_the_minimum():
    rng = np.random.default_rng(3)
    few = feature_shift(rng.normal(0, 1, 500), rng.normal(3, 1, 29))
    assert few.status is Status.INSUFFICIENT_DATA
    assert few.ks_statistic > 0.5 and few.recent_count == 29  # evidence still reported
    assert feature_shift(rng.normal(0, 1, 500), rng.normal(3, 1, 30)).status is Status.DRIFTED
    empty = feature_shift(rng.normal(0, 1, 500), []).to_dict()
    assert empty["status"] == "insufficient_data" and empty["ks_statistic"] is None
    with pytest.raises(ValueError, match="NaN"):
        feature_shift([1.0, float("nan")], [1.0])


def test_stable_stream_of_3000_captures_never_warns():
    """Sliding windows of 200 (and 100) re-tested every 20 captures against one reference."""
    rng = np.random.default_rng(4)
    reference, stream = stable_features(rng, 500), stable_features(rng, 3000)
    statuses = []
    for window in (100, 200):
        for end in range(window, 3001, 20):
            recent = {name: values[end - window : end] for name, values in stream.items()}
            statuses.append(multi_feature_shift(reference, recent).status)
    assert len(statuses) == 287
    assert not [s for s in statuses if s in ALARMS]


def test_fifteen_percent_brightness_drop_opens_an_alert_within_300_captures():
    rng = np.random.default_rng(5)
    reference = brightness_like(rng, 500)
    stream = np.concatenate([brightness_like(rng, 500), brightness_like(rng, 300, scale=0.85)])
    state, opened_at = None, None
    for end in range(200, stream.size + 1, 10):
        step = alert_step(state, feature_shift(reference, stream[end - 200 : end]).status)
        state = step.state
        if step.event == "opened":
            opened_at = end
            break
    assert opened_at is not None and 500 < opened_at <= 800


def test_multi_feature_shift_names_the_feature_that_moved_and_corrects_alpha():
    rng = np.random.default_rng(6)
    reference, recent = stable_features(rng, 500), stable_features(rng, 200)
    recent["r_g"] = recent["r_g"] + 0.05  # a colour cast of ~2 SD
    result = multi_feature_shift(reference, recent, alpha=1e-3)
    assert result.status is Status.DRIFTED and result.most_moved == "r_g"
    assert result.alpha == pytest.approx(1e-3 / 4)
    assert {f.status for name, f in result.features.items() if name != "r_g"} == {Status.OK}
    assert json.loads(json.dumps(result.to_dict()))["features"]["r_g"]["status"] == "drifted"
    with pytest.raises(ValueError, match="same features"):
        multi_feature_shift(reference, {"brightness": recent["brightness"]})
    idle = multi_feature_shift(reference, {name: [] for name in reference})
    assert idle.status is Status.INSUFFICIENT_DATA and idle.most_moved is None


# --- CUSUM and EWMA --------------------------------------------------------------------------


def alarms_in(values: np.ndarray, chart, **kwargs) -> int:
    """Alarm count over a long in-control series, restarting the chart after each alarm."""
    count, start = 0, 0
    while start < values.size:
        result = chart(values[start:], mean=0.0, sd=1.0, **kwargs)
        if result.alarm_index is None:
            return count
        count, start = count + 1, start + result.alarm_index + 1
    return count


def test_cusum_matches_the_textbook_recursion():
    z = np.random.default_rng(7).normal(0.1, 1, 400)
    upper = lower = 0.0
    for value in z:
        upper, lower = max(0.0, upper + value - 0.5), max(0.0, lower - value - 0.5)
    result = cusum(z, mean=0.0, sd=1.0, h=1e9)
    assert result.upper == pytest.approx(upper) and result.lower == pytest.approx(lower)


def test_cusum_in_control_run_length_is_long_and_matches_theory_at_small_h():
    values = np.random.default_rng(8).normal(size=1_000_000)
    # Default h = 14: ARL0 ~4e6, so a million in-control values give next to no alarm.
    assert alarms_in(values, cusum) <= 10  # ARL0 > 100,000
    # h = 4 checks the chart against Siegmund's approximation (two-sided ARL0 ~168).
    assert 50_000 / alarms_in(values[:50_000], cusum, h=4.0) == pytest.approx(168, rel=0.2)


def test_cusum_catches_a_one_sd_ramp_within_300_and_dates_a_step():
    rng = np.random.default_rng(9)
    ramp = np.arange(1, 301) / 300
    delays = []
    for _ in range(50):
        values = np.concatenate([rng.normal(size=200), rng.normal(size=300) + ramp])
        result = cusum(values, mean=0.0, sd=1.0)
        assert result.alarm_index is not None and result.alarm_side == "up"
        delays.append(result.alarm_index - 200)
    assert min(delays) > 0 and max(delays) < 300
    step = np.concatenate([rng.normal(size=500), rng.normal(2.0, 1, 100)])
    result = cusum(step, mean=0.0, sd=1.0)
    assert result.status is Status.DRIFTED and 500 <= result.alarm_index < 520
    assert abs(result.change_start - 500) <= 10


def test_cusum_runs_incrementally_and_one_outlier_never_alarms():
    values = np.random.default_rng(10).normal(0.3, 1, 600)
    whole = cusum(values, mean=0.0, sd=1.0, h=1e9)
    first = cusum(values[:250], mean=0.0, sd=1.0, h=1e9)
    rest = cusum(
        values[250:], mean=0.0, sd=1.0, h=1e9, initial_upper=first.upper, initial_lower=first.lower
    )
    assert (rest.upper, rest.lower) == pytest.approx((whole.upper, whole.lower))
    spike = np.zeros(100)
    spike[50] = 50.0  # one wild capture: 50 SD
    assert cusum(spike, mean=0.0, sd=1.0).status is Status.OK
    assert cusum(spike, mean=0.0, sd=1.0, clip=None).alarm_index == 50
    assert cusum([], mean=0.0, sd=1.0).status is Status.INSUFFICIENT_DATA


def test_ewma_limits_follow_the_exact_formula_and_the_recursion():
    z = np.random.default_rng(11).normal(size=25)
    lam, width = 0.2, 3.0
    result = ewma(10 + 2 * z, mean=10.0, sd=2.0, lam=lam, L=width)
    smoothed = 0.0
    for value in z:
        smoothed = lam * value + (1 - lam) * smoothed
    limit = width * math.sqrt(lam / (2 - lam) * (1 - (1 - lam) ** (2 * z.size)))
    assert result.statistic == pytest.approx(smoothed)
    assert result.ewma == pytest.approx(10 + 2 * smoothed)
    assert result.upper_limit == pytest.approx(10 + 2 * limit)
    assert result.lower_limit == pytest.approx(10 - 2 * limit)
    first = ewma([10.0], mean=10.0, sd=2.0, lam=lam, L=width)
    assert first.upper_limit == pytest.approx(10 + 2 * width * lam)  # t = 1: L * lam * sd


def test_ewma_is_calm_in_control_and_catches_the_ramp():
    rng = np.random.default_rng(12)
    assert alarms_in(rng.normal(size=600_000), ewma) <= 10  # ARL0 > 60,000 (~2e5)
    ramp = np.arange(1, 301) / 300
    caught = [ewma(rng.normal(size=300) + ramp, mean=0.0, sd=1.0).alarm_index for _ in range(50)]
    assert sum(index is not None for index in caught) >= 48


def test_reference_estimates_and_normal_scores():
    rng = np.random.default_rng(13)
    clean = rng.normal(0, 1, 950)
    contaminated = np.concatenate([clean, np.full(50, 20.0)])  # 5% odd captures
    assert reference_estimate(contaminated).mean > 0.9
    robust = reference_estimate(contaminated, robust=True)
    assert abs(robust.mean) < 0.15 and robust.sd == pytest.approx(1.0, abs=0.15)
    skewed = rng.lognormal(0, 1, 2000)
    assert reference_estimate(skewed).asymmetry > 0.3  # a median centre would sit off the mean
    scores = normal_scores(rng.lognormal(0, 1, 20000), skewed)
    assert abs(scores.mean()) < 0.1 and scores.std() == pytest.approx(1.0, abs=0.05)
    assert cusum(scores, mean=0.0, sd=1.0).status is Status.OK
    shifted = normal_scores(rng.lognormal(0.5, 1, 300), skewed)  # +0.5 SD in log units
    assert cusum(shifted, mean=0.0, sd=1.0).status is Status.DRIFTED


# --- embeddings ------------------------------------------------------------------------------


def test_logistic_fit_matches_a_general_optimiser():
    rng = np.random.default_rng(14)
    x = rng.normal(size=(300, 5))
    y = (x[:, 0] - 0.5 * x[:, 1] + rng.normal(size=300) > 0).astype(float)
    w = logistic_fit(x, y, l2=2.0)

    def objective(v):
        z = x @ v[:-1] + v[-1]
        return np.sum(np.logaddexp(0, z) - y * z) + 1.0 * np.sum(v[:-1] ** 2)

    best = optimize.minimize(objective, np.zeros(6), method="BFGS", options={"gtol": 1e-8})
    assert w == pytest.approx(best.x, abs=1e-4)


def test_domain_classifier_is_calm_on_one_distribution():
    rng = np.random.default_rng(15)
    for seed in range(5):
        result = embedding_shift(rng.normal(size=(200, 32)), rng.normal(size=(200, 32)), seed=seed)
        assert result.status is Status.OK and abs(result.auc - 0.5) < 0.12


def test_domain_classifier_pvalue_is_valid_under_the_null():
    rng = np.random.default_rng(16)
    pvalues = [
        embedding_shift(rng.normal(size=(80, 16)), rng.normal(size=(80, 16)), seed=i).pvalue
        for i in range(100)
    ]
    assert sum(p < 0.05 for p in pvalues) <= 10


def test_domain_classifier_catches_shifts_in_a_few_and_in_one_dimension():
    rng = np.random.default_rng(17)
    recent = rng.normal(size=(200, 32))
    recent[:, :3] += 1.0
    few = embedding_shift(rng.normal(size=(200, 32)), recent)
    assert few.auc > 0.75 and few.status in ALARMS
    assert {dim for dim, _ in few.top_dimensions} == {0, 1, 2}
    recent = rng.normal(size=(200, 32))
    recent[:, 5] += 2.0
    one = embedding_shift(rng.normal(size=(200, 32)), recent)
    assert one.status is Status.DRIFTED and one.top_dimensions[0][0] == 5
    recent = rng.normal(size=(200, 32))
    recent[:, 9] *= 3.0  # a spread change only: visible through the squared terms
    spread = embedding_shift(rng.normal(size=(200, 32)), recent)
    assert spread.status in ALARMS and spread.top_dimensions[0][0] == 9


def test_domain_classifier_insufficient_data_and_bad_input():
    rng = np.random.default_rng(18)
    small = embedding_shift(rng.normal(size=(200, 8)), rng.normal(size=(20, 8)))
    assert small.status is Status.INSUFFICIENT_DATA and small.auc is None
    with pytest.raises(ValueError, match="dimension"):
        embedding_shift(rng.normal(size=(50, 8)), rng.normal(size=(50, 9)))


def test_domain_classifier_is_fast_enough():
    rng = np.random.default_rng(19)
    reference, recent = rng.normal(size=(500, 32)), rng.normal(size=(500, 32))
    # ~15 ms on one quiet core; the best of seven keeps a busy shared machine from failing it,
    # and anything like a permutation test (~1 s) still fails it.
    timings = []
    for _ in range(7):
        start = time.perf_counter()
        embedding_shift(reference, recent)
        timings.append(time.perf_counter() - start)
    assert min(timings) < 0.2


def test_mmd_is_near_zero_on_one_distribution_and_positive_on_shifted():
    rng = np.random.default_rng(20)
    reference, other = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    same = mmd_rbf(reference, other)
    assert abs(same.mmd2) < 0.005 and same.pvalue > 0.05
    shifted = mmd_rbf(reference, rng.normal(0.5, 1, size=(300, 8)))
    assert shifted.mmd2 > 0.02 and shifted.pvalue < 0.01
    # The median heuristic: the median pairwise distance of the pooled, standardized sample.
    pooled = (np.vstack([reference, other]) - reference.mean(0)) / reference.std(0)
    assert same.bandwidth == pytest.approx(np.median(distance.pdist(pooled)), rel=1e-9)


# --- proportions -----------------------------------------------------------------------------


def test_fisher_pvalue_matches_the_hypergeometric_tail():
    # Recent 5/20 vs reference 1/20: P(X >= 5), X ~ hypergeometric(40 items, 6 successes, 20 drawn).
    by_hand = sum(math.comb(6, x) * math.comb(34, 20 - x) for x in range(5, 7)) / math.comb(40, 20)
    result = proportion_shift(1, 20, 5, 20, min_count=10)
    assert result.pvalue == pytest.approx(by_hand, rel=1e-9)
    fixed = proportion_shift(2, 100, 9, 100, fixed_reference=True)
    assert fixed.pvalue == pytest.approx(stats.binom.sf(8, 100, 0.02), rel=1e-9)


def test_override_rate_from_2_to_10_percent_is_caught_and_2_vs_2_is_calm():
    assert proportion_shift(6, 300, 30, 300).status is Status.DRIFTED
    assert proportion_shift(6, 300, 6, 300).status is Status.OK
    rng = np.random.default_rng(21)
    rises = [
        proportion_shift(rng.binomial(500, 0.02), 500, rng.binomial(300, 0.10), 300).status
        for _ in range(400)
    ]
    assert sum(s is Status.DRIFTED for s in rises) >= 0.93 * 400
    calm = [
        proportion_shift(rng.binomial(500, 0.02), 500, rng.binomial(300, 0.02), 300).status
        for _ in range(400)
    ]
    assert sum(s in ALARMS for s in calm) <= 1


def test_proportion_directions_effect_guard_and_counts():
    # A deferral share that falls from 30% to 10%.
    assert proportion_shift(60, 200, 20, 200, direction="down").status is Status.DRIFTED
    assert proportion_shift(60, 200, 20, 200, direction="up").status is Status.OK
    assert proportion_shift(60, 200, 20, 200, direction="both").status is Status.DRIFTED
    # 2.0% -> 2.3% on 200,000 decisions each: p ~1e-11, but 0.3 points is no alarm.
    tiny = proportion_shift(4000, 200_000, 4600, 200_000)
    assert tiny.pvalue < 1e-6 and tiny.status is Status.OK
    few = proportion_shift(6, 300, 10, 20)
    assert few.status is Status.INSUFFICIENT_DATA and few.recent_total == 20
    none = proportion_shift(6, 300, 0, 0).to_dict()
    assert none["status"] == "insufficient_data" and none["recent_rate"] is None
    result = proportion_shift(0, 300, 30, 300).to_dict()
    assert result["ratio"] is None and result["status"] == "drifted"  # no reference overrides
    assert result["recent_ci"][0] < 0.1 < result["recent_ci"][1]
    json.dumps(result)


# --- p-chart and Pareto ----------------------------------------------------------------------


def test_p_chart_limits_follow_the_formula_with_varying_sizes():
    chart = p_chart([5, 5, 5], [100, 400, 50], center=0.05)
    for period, n in zip(chart.periods, (100, 400, 50), strict=True):
        half = 3 * math.sqrt(0.05 * 0.95 / n)
        assert period.upper_limit == pytest.approx(0.05 + half)
        assert period.lower_limit == pytest.approx(max(0.0, 0.05 - half))
    assert chart.center_from == "reference"
    assert p_chart([1, 3], [100, 100]).center == pytest.approx(0.02)


def test_p_chart_flags_points_beyond_limits_runs_and_collapses():
    spike = p_chart([5, 4, 6, 15, 5], [100] * 5, center=0.05)
    assert spike.status is Status.DRIFTED and spike.beyond_limits == (3,)
    assert spike.periods[3].beyond == "above"
    creeping = p_chart([7] * 8 + [5], [100] * 9, center=0.05)  # inside the limits, one side
    assert creeping.status is Status.WARNING and creeping.runs == (7,)
    collapse = p_chart([50, 48, 0], [1000] * 3, center=0.05)  # a model that stopped seeing
    assert collapse.periods[2].beyond == "below" and collapse.status is Status.DRIFTED
    sparse = p_chart([0] * 10, [10] * 10, center=0.02)  # expecting 0.2 defects a period
    assert sparse.status is Status.OK and sparse.runs == ()
    assert p_chart([1, 2], [100, 100]).status is Status.INSUFFICIENT_DATA
    with pytest.raises(ValueError):
        p_chart([1, 2], [100])
    json.dumps(spike.to_dict())


def test_pareto_sorts_with_cumulative_shares():
    result = pareto({"stain": 5, "scratch": 10, "crack": 3, "dent": 3}).to_dict()
    assert [e["name"] for e in result["entries"]] == ["scratch", "stain", "crack", "dent"]
    assert [e["cumulative_share"] for e in result["entries"]] == [0.4762, 0.7143, 0.8571, 1.0]
    assert pareto({}).total == 0
    with pytest.raises(ValueError):
        pareto({"scratch": -1})


# --- alert hysteresis ------------------------------------------------------------------------


def run_alert(statuses, **kwargs):
    state, events = None, []
    for status in statuses:
        step = alert_step(state, status, **kwargs)
        state = json.loads(json.dumps(step.state.to_dict()))  # stored as JSON between runs
        events.append(step.event)
    return AlertState.from_dict(state), events


def test_alert_opens_after_three_bad_and_closes_after_three_ok():
    state, events = run_alert(["warning", "warning", "drifted", "ok", "ok", "ok"])
    assert events == [None, None, "opened", None, None, "closed"]
    assert not state.is_open
    state, events = run_alert(["warning"] * 3 + ["drifted"])
    assert events[-1] == "escalated" and state.level is Status.DRIFTED


def test_alert_does_not_flap_on_an_alternating_signal():
    _, events = run_alert(["warning", "ok"] * 20)
    assert set(events) == {None}  # never opens
    state, events = run_alert(["drifted"] * 3 + ["ok", "ok", "warning"] * 10)
    assert events.count("opened") == 1 and "closed" not in events and state.is_open


def test_insufficient_data_neither_extends_nor_breaks_a_streak():
    _, events = run_alert(["warning", "insufficient_data", "warning", "warning"])
    assert events == [None, None, None, "opened"]
    state, _ = run_alert(["warning"] * 3 + ["insufficient_data"] * 10)
    assert state.is_open
    _, events = run_alert(["drifted"], open_after=1)
    assert events == ["opened"]
