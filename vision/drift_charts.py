"""Monitoring over time: CUSUM and EWMA charts, the p-chart, Pareto, and alert hysteresis.

The two-sample tests (a recent window against a reference) live in `vision.drift_statistics`;
these follow a sequence (capture after capture, period after period, evaluation after
evaluation) and say when it has left its in-control behaviour.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import signal, special

from vision.drift_statistics import JsonResult, Status, _array, robust_scale, worst_status

# --- reference estimates for the charts ---------------------------------------------------


@dataclass(frozen=True)
class ReferenceEstimate(JsonResult):
    """In-control mean and SD of a feature, for cusum()/ewma()."""

    mean: float
    sd: float
    count: int
    robust: bool
    asymmetry: float  # (mean - median) / SD: how far a median centre would sit off the mean


def reference_estimate(sample: Sequence[float], *, robust: bool = False) -> ReferenceEstimate:
    """Mean and SD of a reference sample, or with `robust` its median and 1.4826 * MAD.

    Robust estimates resist a few odd captures in the reference (a hand in view, a blurred
    frame) but estimate the mean only for a symmetric feature: the charts accumulate the gap
    between the centre and the true mean, and a median 0.25 SD off it cuts a CUSUM's in-control
    run from ~10^5 to a few thousand captures. Check `asymmetry`; for a skewed or multi-modal
    feature (sharpness, brightness over dark and light products) use normal_scores() instead.
    """
    values = _array(sample, "sample")
    if values.size < 2:
        raise ValueError(f"a reference needs at least 2 values, got {values.size}")
    mean, sd, median = float(values.mean()), float(values.std(ddof=1)), float(np.median(values))
    asymmetry = (mean - median) / sd if sd > 0 else 0.0
    if robust:
        return ReferenceEstimate(median, robust_scale(values), values.size, True, asymmetry)
    return ReferenceEstimate(mean, max(sd, robust_scale(values)), values.size, False, asymmetry)


def normal_scores(values: Sequence[float], reference: Sequence[float]) -> np.ndarray:
    """Each value's rank in the reference mapped to a standard normal quantile: in control the
    scores are close to N(0, 1) whatever the feature's distribution, so cusum()/ewma() with
    mean=0, sd=1 keep their normal-theory run lengths on skewed and multi-modal features. Ties
    take mid-ranks; scores stay within about +-3 (a natural clip) for a 500-value reference."""
    ref = np.sort(_array(reference, "reference"))
    if ref.size == 0:
        raise ValueError("normal_scores needs a non-empty reference")
    x = _array(values, "values")
    below = np.searchsorted(ref, x, side="left")
    up_to = np.searchsorted(ref, x, side="right")
    return special.ndtri((below + up_to + 1.0) / (2.0 * (ref.size + 1.0)))


def _standardized(values: Sequence[float], mean: float, sd: float, clip: float | None):
    if not sd > 0:
        raise ValueError(f"sd must be positive, got {sd}")
    z = (_array(values, "values") - mean) / sd
    # Clipping bounds what one odd capture can add (at most clip - k to a CUSUM), so a single
    # outlier never alarms on its own; P(|z| > 4) is 6e-5 for normal data, a negligible cost.
    return np.clip(z, -clip, clip) if clip else z


# --- CUSUM and EWMA ---------------------------------------------------------------------------

# Two-sided tabular CUSUM on standardized values, tuned for k = 0.5 (fastest for a 1-SD shift).
# h = 12: in-control ARL ~5 x 10^5 with known parameters (Siegmund; 0.45% of 3,000-capture
# runs alarm in simulation), ~2 x 10^5 with mean/SD from 500 reference values (1.3%); a ramp
# from 0 to 1 SD over 300 captures alarms by capture 300 in 99.9% of runs (median 203).
CUSUM_K = 0.5
CUSUM_H = 12.0
# EWMA with exact time-varying limits; L = 4.2 gives an in-control ARL of ~6 x 10^4 at
# lambda = 0.1 (simulated), and the same ramp alarms by capture 300 in 99.7% of runs.
EWMA_LAMBDA = 0.1
EWMA_L = 4.2
CLIP = 4.0


@dataclass(frozen=True)
class CusumResult(JsonResult):
    """A two-sided CUSUM over a series, in SD units; `drifted` once a side has passed h."""

    status: Status
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
    reference_estimate(), or pass normal_scores() with mean=0, sd=1. To run incrementally, pass
    the previous result's upper/lower as initial_upper/initial_lower (indices then count from
    the new values; change_start 0 means "at or before the first of them").

    A chart does not restart itself: once it has signalled it reads `drifted` for these values.
    Restart it (values from after the fix, initial statistics 0) once the cause is dealt with.
    """
    z = _standardized(values, mean, sd, clip)
    if z.size == 0:
        return CusumResult(
            Status.INSUFFICIENT_DATA, initial_upper, initial_lower, None, None, None, 0, h, k
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
    return CusumResult(status, *current, alarm_index, side, change_start, z.size, h, k)


@dataclass(frozen=True)
class EwmaResult(JsonResult):
    """An EWMA chart over a series; `drifted` once the EWMA has left its limits."""

    status: Status
    ewma: float  # the last EWMA, in the feature's unit
    lower_limit: float  # the last point's control limits, in the feature's unit
    upper_limit: float
    statistic: float  # the last EWMA in SD units
    alarm_index: int | None  # first value whose EWMA left the limits
    alarm_side: str | None
    count: int
    lam: float
    L: float  # noqa: N815 - the textbook's name for the limit width


def ewma(
    values: Sequence[float],
    *,
    mean: float,
    sd: float,
    lam: float = EWMA_LAMBDA,
    L: float = EWMA_L,  # noqa: N803
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
        return EwmaResult(Status.INSUFFICIENT_DATA, mean, mean, mean, 0.0, None, None, 0, lam, L)
    smoothed = signal.lfilter([lam], [1.0, lam - 1.0], z)
    steps = np.arange(1, z.size + 1)
    width = L * np.sqrt(lam / (2.0 - lam) * (1.0 - (1.0 - lam) ** (2 * steps)))
    hits = np.flatnonzero(np.abs(smoothed) > width)
    alarm = int(hits[0]) if hits.size else None
    side = None if alarm is None else ("up" if smoothed[alarm] > 0 else "down")
    status = Status.OK if alarm is None else Status.DRIFTED
    last, limit = float(smoothed[-1]), float(width[-1])
    low, high = mean - sd * limit, mean + sd * limit
    return EwmaResult(status, mean + sd * last, low, high, last, alarm, side, z.size, lam, L)


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
        # the binomial's skew; it neither extends nor starts a run.
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
