"""The four signals of a line, computed from plain samples (no database, no Django): the job
reads bounded windows (monitoring.selectors) and hands them here; the bench and the tests call
these directly. Each signal answers a status (ok, warning, drifted, insufficient_data), the
value its chart plots with the reference band around it, a one-line summary and the evidence.

The statistics and their thresholds are in vision.drift_statistics and vision.drift_charts:
effect sizes guarded by p-values, so that large samples do not turn harmless differences into
alarms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from vision import drift_charts as charts
from vision import drift_statistics as stats
from vision.drift_statistics import Status

FEATURE_WORDS = {
    "brightness": "brightness",
    "contrast": "contrast",
    "sharpness": "sharpness",
    "r_g": "red/green balance",
    "b_g": "blue/green balance",
    "saturation": "saturation",
}


@dataclass(frozen=True)
class SignalResult:
    status: str
    summary: str
    value: float | None = None  # what the time-series chart plots
    band: tuple[float, float] | None = None  # the reference band around it
    sample_size: int = 0
    evidence: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "summary": self.summary,
            "value": _round(self.value),
            "band": [_round(self.band[0]), _round(self.band[1])] if self.band else None,
            "sample_size": self.sample_size,
            **self.evidence,
        }


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), digits)


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{100 * rate:.1f}%"


# --- data drift --------------------------------------------------------------------------


@dataclass(frozen=True)
class DataSamples:
    """Two references answer two questions. `reference_*` is what this line looked like when
    it was normal (its production model's first captures on it, or captures a supervisor
    pinned): has the line changed? Every test runs against it. `training_stats` is what the
    model was trained on: are the line's images still within it? A line legitimately sees a
    narrower slice of the training conditions (one lamp, one phone colour), so against the
    training data only a rise in captures outside its range counts, not a different spread."""

    reference_stats: Mapping[str, Sequence[float]]
    recent_stats: Mapping[str, Sequence[float]]  # the recent window, oldest first
    trend_stats: Mapping[str, Sequence[float]]  # the longer window for the EWMA, oldest first
    reference_embeddings: Sequence[Sequence[float]] = ()
    recent_embeddings: Sequence[Sequence[float]] = ()
    reference_kind: str = ""
    training_stats: Mapping[str, Sequence[float]] = field(default_factory=dict)
    # The recent window compared with the training range (all of it: the range test does not
    # need to avoid the first captures).
    training_recent_stats: Mapping[str, Sequence[float]] = field(default_factory=dict)


# Against the training data: the share of recent captures outside the training images' central
# 98% range, per feature (2% expected), must rise clearly before it counts.
COVERAGE_QUANTILES = (0.01, 0.99)
COVERAGE_EXPECTED = 0.02
COVERAGE_WARN = charts.RateThresholds(change=0.06, ratio=3.0)
COVERAGE_DRIFT = charts.RateThresholds(change=0.13, ratio=6.0)


def coverage(
    training: Mapping[str, Sequence[float]], recent: Mapping[str, Sequence[float]]
) -> tuple[Status, dict]:
    """Which features left the training images' range, by how many recent captures."""
    features = _common(training, recent)
    results = {}
    for name in features:
        reference = np.asarray(training[name], dtype=np.float64)
        values = np.asarray(recent[name], dtype=np.float64)
        if reference.size < stats.MIN_COUNT:
            continue
        low, high = np.quantile(reference, COVERAGE_QUANTILES)
        outside = int(np.sum((values < low) | (values > high)))
        results[name] = charts.proportion_shift(
            round(COVERAGE_EXPECTED * 1000), 1000, outside, int(values.size),
            fixed_reference=True, warn=COVERAGE_WARN, drift=COVERAGE_DRIFT,
            alpha=stats.ALPHA / max(len(features), 1),
        )  # fmt: skip
    if not results:
        return Status.INSUFFICIENT_DATA, {}
    # At most a warning: a line may run at the edge of what the model was trained on for good
    # (its own lamp); what changed on the line itself is judged against the line's own normal.
    status = min(
        stats.worst_status([r.status for r in results.values()]),
        Status.WARNING,
        key=[Status.OK, Status.INSUFFICIENT_DATA, Status.WARNING, Status.DRIFTED].index,
    )
    worst = max(results, key=lambda n: results[n].recent_rate or 0.0)
    return status, {
        "status": status.value,
        "most_outside": worst,
        # 1.0 = the drift threshold (as the other severities)
        "severity": (results[worst].recent_rate or 0.0)
        / (COVERAGE_EXPECTED + COVERAGE_DRIFT.change),
        "features": {
            name: {"outside": r.recent_successes, "of": r.recent_total, "status": r.status.value}
            for name, r in results.items()
        },
    }


def _common(a: Mapping[str, Sequence[float]], b: Mapping[str, Sequence[float]]) -> list[str]:
    return sorted(name for name in set(a) & set(b) if len(a[name]) and len(b[name]))


# lambda 0.05 and L 4.8: with a 500-capture reference, 0.55% of 3,000-capture stable runs of one
# feature leave the limits at some point (2.3% at lambda 0.1, L 4.5), and a 1-SD ramp over 300
# captures is caught within them 99.75% of the time (simulations in vision/drift_charts).
TREND_LAMBDA = 0.05
TREND_L = 4.8


def _trend(samples: DataSamples, features: list[str]) -> tuple[Status, dict | None]:
    """Slow drift: an EWMA chart of each feature's normal scores against its reference
    distribution (scores through the reference's own ranks, so skewed features chart as
    honestly as symmetric ones). The status is the chart's *current* point: an EWMA forgets
    (lambda 0.05: about 40 captures), so the signal clears soon after the line recovers, where a
    CUSUM would hold its alarm until restarted by hand."""
    worst: dict | None = None
    status = Status.OK
    for name in features:
        values = samples.trend_stats.get(name) or []
        if len(values) < stats.MIN_COUNT or len(samples.reference_stats[name]) < stats.MIN_COUNT:
            continue
        scores = stats.normal_scores(values, samples.reference_stats[name])
        result = charts.ewma(scores, mean=0.0, sd=1.0, lam=TREND_LAMBDA, L=TREND_L)
        limit = (result.upper_limit - result.lower_limit) / 2
        excess = abs(result.statistic) / limit if limit > 0 else 0.0
        if excess > 1.0:
            status = Status.DRIFTED
            if worst is None or excess > worst["excess"]:
                worst = {
                    "feature": name,
                    "side": "up" if result.statistic > 0 else "down",
                    "ewma_sd": _round(result.statistic, 2),
                    "limit_sd": _round(limit, 2),
                    "excess": _round(excess, 2),
                    "captures": result.count,
                }
    return status, worst


def data_drift(samples: DataSamples) -> SignalResult:
    features = _common(samples.reference_stats, samples.recent_stats)
    recent_count = max((len(v) for v in samples.recent_stats.values()), default=0)
    covered_status, covered = (
        coverage(samples.training_stats, samples.training_recent_stats or samples.recent_stats)
        if samples.training_stats
        else (Status.INSUFFICIENT_DATA, {})
    )
    window = trend = embedding = None
    statuses = [covered_status]
    if features:
        window = stats.multi_feature_shift(
            {n: samples.reference_stats[n] for n in features},
            {n: samples.recent_stats[n] for n in features},
        )
        trend_status, trend = _trend(samples, features)
        statuses += [window.status, trend_status]
        if len(samples.reference_embeddings) and len(samples.recent_embeddings):
            embedding = stats.embedding_shift(
                np.asarray(samples.reference_embeddings, dtype=np.float64),
                np.asarray(samples.recent_embeddings, dtype=np.float64),
            )
            statuses.append(embedding.status)
    known = [s for s in statuses if s != Status.INSUFFICIENT_DATA]
    if not known or (
        window is not None and window.status == Status.INSUFFICIENT_DATA and not covered
    ):
        return SignalResult(
            Status.INSUFFICIENT_DATA,
            "No reference or not enough recent captures yet.",
            sample_size=recent_count,
            evidence={"reference": {"kind": samples.reference_kind}},
        )
    status = stats.worst_status(known)
    severities = [shift.severity for shift in window.features.values()] if window else []
    if embedding and embedding.auc is not None:
        severities.append((embedding.auc - 0.5) / (stats.DRIFT_AUC - 0.5))
    if covered:
        severities.append(covered["severity"])
    value = max(severities, default=None)
    summary = _data_summary(status, window, trend, embedding, covered)
    evidence = {
        "reference": {"kind": samples.reference_kind, "count": _reference_count(samples)},
        "most_moved": window.most_moved if window else None,
        "features": {
            name: {
                "status": shift.status.value,
                "reference_median": _round(shift.reference_median),
                "recent_median": _round(shift.recent_median),
                "shift_sd": _round(shift.shift, 2),
                "ks": _round(shift.ks_statistic, 3),
                "pvalue": shift.ks_pvalue,
            }
            for name, shift in (window.features.items() if window else [])
        },
        "trend": trend,
        "embedding": embedding.to_dict() if embedding else None,
        "training_coverage": covered or None,
    }
    # Severity 1 is a drift threshold; the band is the calm zone below the warning level.
    band = (0.0, stats.WARN_SHIFT.ks / stats.DRIFT_SHIFT.ks)
    return SignalResult(status, summary, value, band, recent_count, evidence)


def _reference_count(samples: DataSamples) -> int:
    return max((len(v) for v in samples.reference_stats.values()), default=0)


def _data_summary(status, window, trend, embedding, covered) -> str:
    if status == Status.INSUFFICIENT_DATA:
        return "Not enough captures to compare with the reference yet."
    parts = []
    if window and window.most_moved and window.features[window.most_moved].status != Status.OK:
        shift = window.features[window.most_moved]
        word = FEATURE_WORDS.get(window.most_moved, window.most_moved)
        direction = "up" if (shift.shift or 0) > 0 else "down"
        levels = f"{shift.reference_median:.3g} → {shift.recent_median:.3g}"
        parts.append(
            f"{word} {direction} {abs(shift.shift or 0):.1f} SD ({levels}, "
            f"KS {shift.ks_statistic:.2f})"
        )
    if trend:
        word = FEATURE_WORDS.get(trend["feature"], trend["feature"])
        parts.append(f"{word} trending {trend['side']} (EWMA {trend['ewma_sd']:+.2f} SD, "
                     f"limit {trend['limit_sd']:.2f})")  # fmt: skip
    if embedding and embedding.status not in (Status.OK, Status.INSUFFICIENT_DATA):
        auc = f"{embedding.auc:.2f}"
        parts.append(f"the model sees different images (domain classifier AUC {auc})")
    if covered and covered["status"] not in (Status.OK, Status.INSUFFICIENT_DATA):
        name = covered["most_outside"]
        row = covered["features"][name]
        word = FEATURE_WORDS.get(name, name)
        parts.append(f"{row['outside']} of {row['of']} recent captures have a {word} outside "
                     "the training images' range")  # fmt: skip
    if not parts:
        return "Images look like the reference."
    return "; ".join(parts)[:1].upper() + "; ".join(parts)[1:] + "."


# --- prediction drift --------------------------------------------------------------------


@dataclass(frozen=True)
class PredictionSamples:
    baseline_scores: Sequence[float]  # the model's first window on the line
    recent_scores: Sequence[float]
    baseline_deferred: int = 0
    recent_deferred: int = 0
    baseline_failed: int = 0
    recent_failed: int = 0


def prediction_drift(samples: PredictionSamples) -> SignalResult:
    base_n, recent_n = len(samples.baseline_scores), len(samples.recent_scores)
    if base_n < stats.MIN_COUNT or recent_n < stats.MIN_COUNT:
        return SignalResult(
            Status.INSUFFICIENT_DATA,
            f"Not enough scored captures yet ({recent_n} recent, {base_n} in the model's first "
            "window).",
            sample_size=recent_n,
        )
    scores = stats.feature_shift(samples.baseline_scores, samples.recent_scores)
    deferred = charts.proportion_shift(
        samples.baseline_deferred, base_n, samples.recent_deferred, recent_n, direction="both"
    )
    failed = charts.proportion_shift(
        samples.baseline_failed, base_n, samples.recent_failed, recent_n, direction="both"
    )
    status = stats.worst_status([scores.status, deferred.status, failed.status])
    parts = []
    if scores.status != Status.OK:
        parts.append(f"scores moved (KS {scores.ks_statistic:.2f}, median "
                     f"{scores.reference_median:.3f} → {scores.recent_median:.3f})")  # fmt: skip
    if deferred.status != Status.OK:
        parts.append(f"deferred to humans {_percent(deferred.reference_rate)} → "
                     f"{_percent(deferred.recent_rate)}")  # fmt: skip
    if failed.status != Status.OK:
        parts.append(f"failed {_percent(failed.reference_rate)} → {_percent(failed.recent_rate)}")
    summary = "; ".join(parts) or "Scores, deferrals and fails as in the model's first window"
    reference_rate = deferred.reference_rate
    band_half = charts.WARN_RATE.change
    return SignalResult(
        status,
        summary[:1].upper() + summary[1:] + ".",
        deferred.recent_rate,
        (max(0.0, reference_rate - band_half), min(1.0, reference_rate + band_half)),
        recent_n,
        {
            "scores": scores.to_dict(),
            "deferral": deferred.to_dict(),
            "fail_share": failed.to_dict(),
        },
    )


# --- concept drift -----------------------------------------------------------------------


@dataclass(frozen=True)
class ConceptSamples:
    baseline_overrides: int  # in the model's first judged decisions on the line
    baseline_judged: int
    recent_overrides: int
    recent_judged: int
    audit_only: bool = False  # `full`: the audit sample is the only ground truth


def concept_drift(samples: ConceptSamples) -> SignalResult:
    source = "audit samples" if samples.audit_only else "judged decisions"
    if samples.baseline_judged < stats.MIN_COUNT or samples.recent_judged < stats.MIN_COUNT:
        return SignalResult(
            Status.INSUFFICIENT_DATA,
            f"Not enough {source} yet ({samples.recent_judged} recent, "
            f"{samples.baseline_judged} in the model's first window; {stats.MIN_COUNT} needed).",
            sample_size=samples.recent_judged,
            evidence={"source": source},
        )
    result = charts.proportion_shift(
        samples.baseline_overrides,
        samples.baseline_judged,
        samples.recent_overrides,
        samples.recent_judged,
        direction="up",
    )
    evidence = {"overrides": result.to_dict(), "source": source}
    if result.status == Status.INSUFFICIENT_DATA:
        return SignalResult(
            Status.INSUFFICIENT_DATA,
            f"Not enough {source} yet ({samples.recent_judged} recent, "
            f"{samples.baseline_judged} in the model's first window).",
            result.recent_rate,
            sample_size=samples.recent_judged,
            evidence=evidence,
        )
    rate_text = (
        f"inspectors overrode the model on {_percent(result.recent_rate)} of the last "
        f"{samples.recent_judged} {source} (first window: {_percent(result.reference_rate)} of "
        f"{samples.baseline_judged})"
    )
    summary = rate_text[:1].upper() + rate_text[1:] + "."
    high = result.reference_rate + charts.WARN_RATE.change
    return SignalResult(
        result.status, summary, result.recent_rate, (0.0, high), samples.recent_judged, evidence
    )


# --- yield -------------------------------------------------------------------------------


@dataclass(frozen=True)
class YieldSamples:
    hours: Sequence[str]  # ISO start of each hour, oldest first
    defects: Sequence[int]  # failed captures per hour
    totals: Sequence[int]  # decided captures per hour
    baseline_rate: float | None = None  # the model's first window's fail rate, if known
    baseline_count: int | None = None  # how many decided captures that rate rests on
    defect_types: Mapping[str, int] = field(default_factory=dict)  # inspectors' labels
    # How the taxonomy shows each name: {"scratch": {"label", "colour", "severity"}}.
    defect_type_styles: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    throughput_per_hour: float | None = None
    queue_seconds_median: float | None = None


YIELD_SIGMA_DRIFT = 3.0
YIELD_SIGMA_WARN = 2.5
YIELD_MIN_HOUR = 30  # decided captures an hour needs before it is judged


def _judged_hour(samples: YieldSamples, center: float, center_n: int | None):
    """The newest complete hour with enough captures, and its z against the centre. The
    centre's own error is in the limits (p(1-p)(1/n + 1/n0) when it comes from a window of n0
    captures): a centre taken from 500 captures is not exact, and treating it as exact made
    stable lines read out of control every few hours."""
    for index in range(len(samples.totals) - 2, -1, -1):  # the newest hour is still filling
        n = samples.totals[index]
        if n >= YIELD_MIN_HOUR:
            spread = center * (1 - center) * (1 / n + (1 / center_n if center_n else 0.0))
            rate = samples.defects[index] / n
            z = (rate - center) / spread**0.5 if spread > 0 else 0.0
            return index, rate, z, spread**0.5
    return None


UNKNOWN_TYPE_COLOUR = "#8e8e93"  # a name no taxonomy knows (an import's, a model's)


def _defect_pareto(samples: YieldSamples) -> dict | None:
    """The inspectors' defect types, largest first, each with its taxonomy label, colour and
    severity (None for a name no taxonomy knows)."""
    if not samples.defect_types:
        return None
    pareto = charts.pareto(dict(samples.defect_types)).to_dict()
    for entry in pareto["entries"]:  # type: ignore[union-attr]
        style = samples.defect_type_styles.get(str(entry["name"])) or {}
        entry["label"] = style.get("label") or entry["name"]
        entry["colour"] = style.get("colour") or UNKNOWN_TYPE_COLOUR
        entry["severity"] = style.get("severity")
    return pareto


def yield_signal(samples: YieldSamples) -> SignalResult:
    """Yield as quality engineers chart it: a p-chart of the hourly defect rate. The status
    judges the newest complete hour (beyond 3 sigma: drifted; 2.5: warning), so one bad hour
    is told at once and does not hold a day's alert; the chart shows all 24."""
    total = int(sum(samples.totals))
    pareto = _defect_pareto(samples)
    extra = {
        "pareto": pareto,
        "throughput_per_hour": _round(samples.throughput_per_hour, 1),
        "queue_seconds_median": _round(samples.queue_seconds_median, 1),
    }
    if total < stats.MIN_COUNT or len(samples.totals) < 1:
        return SignalResult(
            Status.INSUFFICIENT_DATA,
            f"Not enough decided captures for a p-chart yet ({total}).",
            sample_size=total,
            evidence=extra,
        )
    baseline = samples.baseline_rate
    usable = baseline is not None and 0.0 < baseline < 1.0
    chart = charts.p_chart(samples.defects, samples.totals, center=baseline if usable else None)
    periods = [
        {"hour": hour, **period.to_dict()}
        for hour, period in zip(samples.hours, chart.periods, strict=True)
    ]
    evidence = {
        "p_chart": {
            "center": _round(chart.center),
            "center_from": chart.center_from,
            "periods": periods,
        },
        **extra,
    }
    judged = (
        _judged_hour(samples, chart.center, samples.baseline_count if usable else None)
        if 0.0 < chart.center < 1.0
        else None
    )
    if chart.status == Status.INSUFFICIENT_DATA or judged is None:
        return SignalResult(
            Status.INSUFFICIENT_DATA,
            f"Too few complete hours for control limits yet (centre {_percent(chart.center)}).",
            sample_size=total,
            evidence=evidence,
        )
    index, rate, z, sigma = judged
    status = (
        Status.DRIFTED
        if abs(z) > YIELD_SIGMA_DRIFT
        else Status.WARNING
        if abs(z) > YIELD_SIGMA_WARN
        else Status.OK
    )
    hour = samples.hours[index][11:16]
    word = {Status.DRIFTED: "out of control", Status.WARNING: "near its limits"}.get(
        status, "in control"
    )
    summary = (
        f"Defect rate {word} in the hour of {hour}: {_percent(rate)} of "
        f"{samples.totals[index]} (centre {_percent(chart.center)}, {z:+.1f} sigma)."
    )
    evidence["judged_hour"] = {
        "hour": samples.hours[index],
        "rate": _round(rate),
        "z": _round(z, 2),
    }
    band = (
        max(0.0, chart.center - YIELD_SIGMA_DRIFT * sigma),
        min(1.0, chart.center + YIELD_SIGMA_DRIFT * sigma),
    )
    return SignalResult(status, summary, rate, band, total, evidence)
