"""Drift monitoring over time and of rates: CUSUM, EWMA, rate tests, p-chart, Pareto, alerts.

The charts follow a sequence (capture after capture, period after period) and say when it has
left its in-control behaviour; the rate tests compare shares (overrides, deferrals, fails)
with a reference; alert_step turns a series of statuses into alerts that do not flap. Feature
and embedding comparisons live in `vision.drift_statistics`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import signal, stats

from vision.drift_statistics import (
    ALPHA,
    MIN_COUNT,
    JsonResult,
    Status,
    finite_array,
    grade_status,
    worst_status,
)

# Re-exported: callers (the monitoring app) first found these two here.


def _standardized(values: Sequence[float], mean: float, sd: float, clip: float | None):
    if not sd > 0:
        raise ValueError(f"sd must be positive, got {sd}")
    z = (finite_array(values, "values") - mean) / sd
    # Clipping bounds what one odd capture can add (at most clip - k to a CUSUM), so a single
    # outlier never alarms on its own; P(|z| > 4) is 6e-5 for normal data, a negligible cost.
    return np.clip(z, -clip, clip) if clip else z


# --- CUSUM and EWMA ---------------------------------------------------------------------------

# Two-sided tabular CUSUM on standardized values, k = 0.5 (fastest for a 1-SD shift). The job
# charts about six features for thousands of captures against a reference of a few hundred,
# so h is set on "no false alarm in 3,000 captures" rather than on a textbook ARL0 of 370.
# h = 14 (simulated with this code): in-control ARL0 ~4 x 10^6 with known parameters; with
# mean/SD from 500 reference values 0.15% of 3,000-capture runs alarm (robust estimates 0.25%,
# normal scores of a lognormal feature 0.1%); a ramp from 0 to 1 SD over 300 captures alarms
# by capture 300 in 99.95% of runs (median 214); a 1-SD step after a median 26 captures.
CUSUM_K = 0.5
CUSUM_H = 14.0
# EWMA with exact time-varying limits, lambda = 0.1 (memory ~20 captures). L = 4.5: ARL0
# ~2 x 10^5 with known parameters; 2.3% of 3,000-capture runs alarm with a 500-value reference
# (so charting six features, expect one false alarm in ~7 such runs: prefer CUSUM for calm);
# the 1-SD ramp alarms by capture 300 in 98% of runs (median 222), a 1-SD step after ~22.
# lambda = 0.05 with L = 4.8 is calmer and as fast (0.55% of runs, ramp 99.75%, median 204),
# at the cost of a twice longer memory after the line recovers.
EWMA_LAMBDA = 0.1
EWMA_L = 4.5
CLIP = 4.0


@dataclass(frozen=True)
class CusumResult(JsonResult):
    """A two-sided CUSUM over a series, in SD units; `drifted` once a side has passed h."""

    status: Status
    alarmed: bool
    upper: float  # current upper statistic (evidence the mean went up)
    lower: float  # current lower statistic (evidence it went down)
    alarm_index: int | None  # first value at which a side passed h
    alarm_side: str | None  # "up" or "down"
    change_start: int | None  # estimated first value of the change: the alarming side's last 0
    count: int
    h: float
    k: float


def cusum(
    values: Sequence[float],
    *,
    mean: float,
    sd: float,
    k: float = CUSUM_K,
    h: float = CUSUM_H,
    clip: float | None = CLIP,
    initial_upper: float = 0.0,
    initial_lower: float = 0.0,
) -> CusumResult:
    """Tabular CUSUM: with z = (x - mean) / sd (clipped to +-clip), S+ = max(0, S+ + z - k) and
    S- = max(0, S- - z - k); a side alarms when it passes h. Take mean/sd from
    drift_statistics.reference_estimate(), or pass its normal_scores() with mean=0, sd=1.
    To run incrementally, pass the previous result's upper/lower as initial_upper/initial_lower
    (indices then count from the new values; change_start 0: at or before the first of them).

    A chart does not restart itself: once it has signalled it reads `drifted` for these values.
    Restart it (values from after the fix, initial statistics 0) once the cause is dealt with.
    """
    z = _standardized(values, mean, sd, clip)
    if z.size == 0:
        return CusumResult(
            Status.INSUFFICIENT_DATA, False, initial_upper, initial_lower, None, None, None, 0, h, k
        )
    first: tuple[int, str, int] | None = None
    current = []
    for side, steps, start in (("up", z - k, initial_upper), ("down", -z - k, initial_lower)):
        # Lindley's recursion in closed form: S_t = W_t - min(W_0..W_t) for the random walk W
        # that starts at -S_0, so the whole series costs two cumulative passes.
        walk = np.concatenate([[-float(start)], np.cumsum(steps)])
        floor = np.minimum.accumulate(walk)
        statistic = walk[1:] - floor[1:]
        current.append(float(statistic[-1]))
        hits = np.flatnonzero(statistic > h)
        if hits.size and (first is None or hits[0] < first[0]):
            alarm = int(hits[0])
            start_index = int(np.flatnonzero(walk[: alarm + 2] == floor[alarm + 1])[-1])
            first = (alarm, side, start_index)
    status = Status.DRIFTED if first else Status.OK
    alarm_index, side, change_start = first if first else (None, None, None)
    return CusumResult(status, bool(first), *current, alarm_index, side, change_start, z.size, h, k)


@dataclass(frozen=True)
class EwmaResult(JsonResult):
    """An EWMA chart over a series; `drifted` once the EWMA has left its limits."""

    status: Status
    alarmed: bool
    ewma: float  # the last EWMA, in the feature's unit
    lower_limit: float  # the last point's control limits, in the feature's unit
    upper_limit: float
    statistic: float  # the last EWMA in SD units
    alarm_index: int | None  # first value whose EWMA left the limits
    alarm_side: str | None
    count: int
    lam: float
    L: float  # the textbook's name for the limit width, in SDs of the EWMA


def ewma(
    values: Sequence[float],
    *,
    mean: float,
    sd: float,
    lam: float = EWMA_LAMBDA,
    L: float = EWMA_L,
    clip: float | None = CLIP,
) -> EwmaResult:
    """EWMA E_t = lam * z_t + (1 - lam) * E_{t-1}, E_0 = 0, of z = (x - mean) / sd, against
    the exact limits +-L * sqrt(lam / (2 - lam) * (1 - (1 - lam)^(2t))) (narrower at the start,
    so an early shift is not hidden by the steady-state width). Like cusum(), it does not
    restart itself after a signal."""
    if not 0.0 < lam <= 1.0:
        raise ValueError(f"lam must be in (0, 1], got {lam}")
    z = _standardized(values, mean, sd, clip)
    if z.size == 0:
        return EwmaResult(
            Status.INSUFFICIENT_DATA, False, mean, mean, mean, 0.0, None, None, 0, lam, L
        )
    smoothed = signal.lfilter([lam], [1.0, lam - 1.0], z)
    steps = np.arange(1, z.size + 1)
    width = L * np.sqrt(lam / (2.0 - lam) * (1.0 - (1.0 - lam) ** (2 * steps)))
    hits = np.flatnonzero(np.abs(smoothed) > width)
    alarm = int(hits[0]) if hits.size else None
    side = None if alarm is None else ("up" if smoothed[alarm] > 0 else "down")
    status = Status.OK if alarm is None else Status.DRIFTED
    last, limit = float(smoothed[-1]), float(width[-1])
    low, high = mean - sd * limit, mean + sd * limit
    return EwmaResult(
        status, alarm is not None, mean + sd * last, low, high, last, alarm, side, z.size, lam, L
    )


# --- rates against a reference ---------------------------------------------------------------


@dataclass(frozen=True)
class RateThresholds:
    """A rate counts as moved when it changes by at least `change` (absolute, 0.02 = 2
    percentage points) AND by a factor of at least `ratio` (up: recent/ref, down: ref/recent)."""

    change: float
    ratio: float


# 2% -> 4% overrides (a doubling, 2 points) is worth a look; 2% -> 5% or more is a drift.
WARN_RATE = RateThresholds(change=0.02, ratio=1.5)
DRIFT_RATE = RateThresholds(change=0.03, ratio=2.0)


@dataclass(frozen=True)
class ProportionShift(JsonResult):
    """A rate (override rate, deferral share, fail share) now against its reference, with the
    counts the conclusion rests on."""

    status: Status
    recent_rate: float | None
    recent_ci: tuple[float, float] | None  # 95% Wilson interval of the recent rate
    change: float | None  # recent - reference
    ratio: float | None  # recent / reference; None when the reference rate is 0
    pvalue: float | None
    direction: str
    test: str  # "fisher_exact" (two samples) or "binomtest" (against a fixed rate)
    reference_rate: float
    recent_successes: int
    recent_total: int
    reference_successes: int
    reference_total: int


_ALTERNATIVE = {"up": "greater", "down": "less", "both": "two-sided"}


def proportion_shift(
    reference_successes: int,
    reference_total: int,
    recent_successes: int,
    recent_total: int,
    *,
    direction: str = "up",
    fixed_reference: bool = False,
    warn: RateThresholds = WARN_RATE,
    drift: RateThresholds = DRIFT_RATE,
    alpha: float = ALPHA,
    min_count: int = MIN_COUNT,
) -> ProportionShift:
    """Has a rate moved against its reference? Exact test in `direction` ("up": recent higher,
    "down": lower, "both"): Fisher's on the 2x2 table of the two samples, or, with
    `fixed_reference`, the binomial test against reference_successes / reference_total taken as
    a known rate (a target, or a reference so large its own noise does not matter). `drifted`
    when p < alpha and the change meets `drift`; `warning` likewise with `warn`.

    `insufficient_data` when recent_total < min_count. Under full automation only the audit
    sample (e.g. 2%) gets a human, so an override rate there rests on few decisions: 30 audited
    captures take 1,500 captures at 2%.
    """
    if direction not in _ALTERNATIVE:
        raise ValueError(f"direction must be one of {sorted(_ALTERNATIVE)}, got {direction!r}")
    if not (0 <= reference_successes <= reference_total and reference_total > 0):
        raise ValueError(f"bad reference counts {reference_successes}/{reference_total}")
    if not 0 <= recent_successes <= recent_total:
        raise ValueError(f"bad recent counts {recent_successes}/{recent_total}")
    reference_rate = reference_successes / reference_total
    status, rate, change, ratio, pvalue, ci = Status.INSUFFICIENT_DATA, None, None, None, None, None
    if recent_total > 0:
        rate = recent_successes / recent_total
        change = rate - reference_rate
        ratio = rate / reference_rate if reference_rate > 0 else None
        counts = (recent_successes, recent_total, reference_successes, reference_total)
        pvalue = _rate_pvalue(*counts, _ALTERNATIVE[direction], fixed_reference)
        status = grade_status(
            pvalue < alpha,
            _moved(change, ratio, drift, direction),
            _moved(change, ratio, warn, direction),
            enough=recent_total >= min_count,
        )
        interval = stats.binomtest(recent_successes, recent_total).proportion_ci(method="wilson")
        ci = (float(interval.low), float(interval.high))
    return ProportionShift(
        status=status,
        recent_rate=rate,
        recent_ci=ci,
        change=change,
        ratio=ratio,
        pvalue=pvalue,
        direction=direction,
        test="binomtest" if fixed_reference else "fisher_exact",
        reference_rate=reference_rate,
        recent_successes=recent_successes,
        recent_total=recent_total,
        reference_successes=reference_successes,
        reference_total=reference_total,
    )


def _moved(change: float, ratio: float | None, limits: RateThresholds, direction: str) -> bool:
    """Whether a rate's change meets both guards of `limits` in `direction`."""
    up = change >= limits.change and (ratio is None or ratio >= limits.ratio)
    down = -change >= limits.change and (ratio is None or ratio * limits.ratio <= 1.0)
    return {"up": up, "down": down, "both": up or down}[direction]


def _rate_pvalue(
    successes: int,
    total: int,
    reference_successes: int,
    reference_total: int,
    alternative: str,
    fixed_reference: bool,
) -> float:
    if fixed_reference:
        rate = reference_successes / reference_total
        return float(stats.binomtest(successes, total, rate, alternative).pvalue)
    table = [
        [successes, total - successes],
        [reference_successes, reference_total - reference_successes],
    ]
    return float(stats.fisher_exact(table, alternative=alternative).pvalue)


# --- the p-chart ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PChartPeriod(JsonResult):
    """One period of a p-chart; rate and limits are None for a period with no items."""

    index: int
    defects: int
    total: int
    rate: float | None
    lower_limit: float | None
    upper_limit: float | None
    beyond: str | None  # "above" or "below" the limits (rule 1)


@dataclass(frozen=True)
class PChart(JsonResult):
    """A p-chart: centre line, per-period limits, and the periods breaking each rule.
    `drifted` when a period is beyond the limits, `warning` for a run only."""

    status: Status
    center: float
    center_from: str  # "data" (Phase I) or "reference" (given)
    periods: tuple[PChartPeriod, ...]
    beyond_limits: tuple[int, ...]  # rule 1: indices of periods beyond sigma limits
    runs: tuple[int, ...]  # rule 4 variant: indices ending run_length in a row on one side
    defects: int
    total: int


def p_chart(
    defects_per_period: Sequence[int],
    totals: Sequence[int],
    *,
    center: float | None = None,
    sigma: float = 3.0,
    run_length: int = 8,
    min_periods: int = 3,
) -> PChart:
    """p-chart of defect (or override, deferral) shares per period, with varying period sizes.

    Centre p = sum(defects) / sum(totals), or `center` from a reference; limits per period
    p +- sigma * sqrt(p (1 - p) / n_i), clipped to [0, 1]. Western Electric rule 1: a period
    beyond the limits (either side: a fail share that collapses can mean a model that stopped
    seeing defects); rule 4 variant: `run_length` periods in a row on one side of the centre.
    `insufficient_data` with fewer than `min_periods` periods that have items.
    """
    defects = [int(d) for d in defects_per_period]
    sizes = [int(n) for n in totals]
    if len(defects) != len(sizes):
        raise ValueError(f"{len(defects)} defect counts for {len(sizes)} totals")
    if any(not 0 <= d <= n for d, n in zip(defects, sizes, strict=True)):
        raise ValueError("each period needs 0 <= defects <= total")
    if center is not None and not 0.0 < center < 1.0:
        raise ValueError(f"center must be in (0, 1), got {center}")
    all_defects, all_total = sum(defects), sum(sizes)
    center_from = "data" if center is None else "reference"
    if center is None:
        center = all_defects / all_total if all_total else 0.0
    p = float(center)
    periods, beyond, runs = [], [], []
    run_side, run_count = 0, 0
    for index, (d, n) in enumerate(zip(defects, sizes, strict=True)):
        if n == 0:
            periods.append(PChartPeriod(index, d, n, None, None, None, None))
            continue
        rate, half = d / n, sigma * math.sqrt(p * (1.0 - p) / n)
        low, high = max(0.0, p - half), min(1.0, p + half)
        out = "above" if rate > high else "below" if rate < low else None
        periods.append(PChartPeriod(index, d, n, rate, low, high, out))
        if out:
            beyond.append(index)
        # A period expecting under one defect is below the centre most of the time just by
        # the binomial's skew; it counts as on the centre line (a run-breaker), like a tie.
        side = (rate > p) - (rate < p) if n * p >= 1.0 else 0
        run_count = run_count + 1 if side and side == run_side else (1 if side else 0)
        run_side = side
        if run_count >= run_length:
            runs.append(index)
    if sum(1 for n in sizes if n > 0) < min_periods:
        status = Status.INSUFFICIENT_DATA
    elif beyond:
        status = Status.DRIFTED
    else:
        status = Status.WARNING if runs else Status.OK
    return PChart(
        status, p, center_from, tuple(periods), tuple(beyond), tuple(runs), all_defects, all_total
    )


# --- Pareto -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParetoEntry(JsonResult):
    name: str
    count: int
    share: float
    cumulative_share: float


@dataclass(frozen=True)
class Pareto(JsonResult):
    """Categories (defect types, override reasons) from most to least frequent."""

    entries: tuple[ParetoEntry, ...]
    total: int


def pareto(counts: Mapping[str, int]) -> Pareto:
    """Counts sorted largest first (ties by name), each with its share and cumulative share."""
    if any(int(count) < 0 for count in counts.values()):
        raise ValueError("pareto counts must not be negative")
    ordered = sorted(((str(n), int(c)) for n, c in counts.items()), key=lambda e: (-e[1], e[0]))
    total = sum(count for _, count in ordered)
    entries, running = [], 0
    for name, count in ordered:
        running += count
        share, cumulative = (count / total, running / total) if total else (0.0, 0.0)
        entries.append(ParetoEntry(name, count, share, cumulative))
    return Pareto(tuple(entries), total)


# --- alert hysteresis -------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertState(JsonResult):
    """What the job stores between evaluations of one signal: whether its alert is open, at
    which level, and the current streaks of bad (warning/drifted) and ok evaluations."""

    is_open: bool = False
    level: Status = Status.OK  # while open: the most severe status seen since it opened
    bad_streak: int = 0
    ok_streak: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, object] | None) -> AlertState:
        if not data:
            return cls()
        return cls(
            is_open=bool(data.get("is_open", False)),
            level=Status(str(data.get("level", Status.OK))),
            bad_streak=int(data.get("bad_streak", 0)),  # type: ignore[call-overload]
            ok_streak=int(data.get("ok_streak", 0)),  # type: ignore[call-overload]
        )


@dataclass(frozen=True)
class AlertStep(JsonResult):
    """The new state and what happened: "opened", "escalated" (warning -> drifted while open),
    "closed" or None."""

    state: AlertState
    event: str | None


def alert_step(
    previous: AlertState | Mapping[str, object] | None,
    status: Status | str,
    *,
    open_after: int = 3,
    close_after: int = 3,
) -> AlertStep:
    """One evaluation's effect on an alert. It opens after `open_after` consecutive warning or
    drifted evaluations and closes after `close_after` consecutive ok ones, so a signal that
    alternates never opens an open/close storm. `insufficient_data` neither extends nor breaks a
    streak: no data is no evidence either way (a line that stops keeps its alert as it was)."""
    if open_after < 1 or close_after < 1:
        raise ValueError("open_after and close_after must be at least 1")
    state = previous if isinstance(previous, AlertState) else AlertState.from_dict(previous)
    status = Status(status)
    if status is Status.INSUFFICIENT_DATA:
        return AlertStep(state, None)
    if status is Status.OK:
        ok_streak = state.ok_streak + 1
        if state.is_open and ok_streak >= close_after:
            return AlertStep(AlertState(ok_streak=ok_streak), "closed")
        level = state.level if state.is_open else Status.OK
        return AlertStep(AlertState(state.is_open, level, 0, ok_streak), None)
    bad_streak = state.bad_streak + 1
    if state.is_open:
        level = worst_status([state.level, status])
        event = "escalated" if level is not state.level else None
        return AlertStep(AlertState(True, level, bad_streak, 0), event)
    # The level an alert opens at is the worst of the streak that opened it, tracked meanwhile.
    level = worst_status([state.level, status]) if state.bad_streak else status
    if bad_streak >= open_after:
        return AlertStep(AlertState(True, level, bad_streak, 0), "opened")
    return AlertStep(AlertState(False, level, bad_streak, 0), None)
