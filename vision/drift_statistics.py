"""Drift statistics for line monitoring: recent features and embeddings against a reference.

Every test here decides on an effect size guarded by a p-value, never on a p-value alone: with
thousands of captures a harmless difference is "significant", and with thirty a large one is
not. Charts over time, rates (override, deferral, fail shares) and alert hysteresis live in
`vision.drift_charts`; the results of both are frozen dataclasses with `to_dict()`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from enum import StrEnum
from functools import partial

import numpy as np
from scipy import special, stats


class Status(StrEnum):
    OK = "ok"
    WARNING = "warning"
    DRIFTED = "drifted"
    INSUFFICIENT_DATA = "insufficient_data"


# A missing feature ranks above "ok": it cannot be called stable, but it is no evidence of change.
_SEVERITY = {Status.OK: 0, Status.INSUFFICIENT_DATA: 1, Status.WARNING: 2, Status.DRIFTED: 3}

MIN_COUNT = 30
# p-value guards. The job re-tests overlapping windows every minute against one fixed reference,
# so a per-test 1% would mean a false warning every hour or two on a perfectly stable line.
ALPHA = 1e-3
# Features are tested the most often (six per window, every window), hence the tighter guard.
FEATURE_ALPHA = 1e-4


def worst_status(statuses: Sequence[Status | str]) -> Status:
    """The most severe of `statuses` (drifted > warning > insufficient_data > ok)."""
    if not statuses:
        return Status.INSUFFICIENT_DATA
    return max((Status(s) for s in statuses), key=_SEVERITY.__getitem__)


def _num(value: float | None, digits: int = 4) -> float | None:
    """JSON-ready: `value` to `digits` significant figures, or None when missing or not finite."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{float(value):.{digits}g}")


# Fields named like these keep more (levels in the feature's own unit) or fewer (p-values)
# significant figures than the 4 of an effect size.
_LEVEL_SUFFIXES = ("median", "scale", "mean", "sd", "center", "bandwidth", "ewma", "limit")
_PVALUE_SUFFIXES = ("pvalue", "alpha")


def jsonable(value: object, name: str = "") -> object:
    """`value` (a result dataclass, mapping, sequence, Status or number) as plain JSON values."""
    if isinstance(value, StrEnum):
        return value.value
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name), f.name) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(key): jsonable(item, name) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [jsonable(item, name) for item in value]
    if isinstance(value, float | np.floating):
        digits = 6 if name.endswith(_LEVEL_SUFFIXES) else 4
        return _num(float(value), 3 if name.endswith(_PVALUE_SUFFIXES) else digits)
    return value.item() if isinstance(value, np.generic) else value


class JsonResult:
    """Base of the frozen result dataclasses: `to_dict()` gives JSON-ready values."""

    def to_dict(self) -> dict[str, object]:
        return jsonable(self)  # type: ignore[return-value]


def grade_status(
    significant: bool, over_drift: bool, over_warn: bool, *, enough: bool = True
) -> Status:
    """A test's status: the effect-size thresholds count only when the p-value guard holds."""
    if not enough:
        return Status.INSUFFICIENT_DATA
    if significant and over_drift:
        return Status.DRIFTED
    return Status.WARNING if significant and over_warn else Status.OK


def finite_array(values: Sequence[float] | np.ndarray, name: str, ndim: int = 1) -> np.ndarray:
    """`values` as float64, 1-D (flattened) or checked 2-D; NaN or infinity is an error."""
    array = np.asarray(values, dtype=np.float64)
    if ndim == 1:
        array = array.ravel()
    elif array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (samples, dims) array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinity")
    return array


# --- one scalar feature -------------------------------------------------------------------


@dataclass(frozen=True)
class ShiftThresholds:
    """Effect sizes at which a feature counts as moved: the KS statistic D (the largest gap
    between the two empirical CDFs, 0-1) or |median shift| in robust reference SDs."""

    ks: float
    shift: float


# Tuned by simulation. For a normal feature D = 0.25 is a 0.64-SD location shift, D = 0.35 a
# 0.9-SD one. Stable: 220 simulated 3,000-capture streams (six features of mixed shapes, windows
# of 100 or 200 re-tested every 10 captures against 500 reference values) gave no warning at
# all. Synthetic phones (brightness bimodal, clusters near 42 and 80): a 15% lighting drop gives
# D ~0.35 once a window is full and opens an alert (3 evaluations) after a median 95 captures
# with 100-capture windows, 170 with 200; a 10% drop opens one within 300 in 90% / 70% of runs.
WARN_SHIFT = ShiftThresholds(ks=0.25, shift=0.75)
DRIFT_SHIFT = ShiftThresholds(ks=0.35, shift=1.0)
MAD_TO_SD = 1.4826
# A reference with no spread (MAD and SD both 0) still needs a unit: a change of one part in a
# thousand of its level then reads as one robust SD.
RELATIVE_SCALE_FLOOR = 1e-3


@dataclass(frozen=True)
class FeatureShift(JsonResult):
    """How one feature's recent values compare with its reference values."""

    status: Status
    ks_statistic: float | None
    ks_pvalue: float | None
    shift: float | None  # (recent median - reference median) / robust reference SD, signed
    reference_median: float | None
    recent_median: float | None
    reference_scale: float | None  # 1.4826 * MAD (floored): the unit of `shift`
    reference_count: int
    recent_count: int
    alpha: float
    severity: float = 0.0  # the larger effect over its drift threshold: 1.0 = at the threshold


def robust_scale(values: np.ndarray) -> float:
    """1.4826 * MAD (the SD for normal data), falling back to the SD when more than half the
    values are equal, floored at a thousandth of the median's size (never 0)."""
    median = float(np.median(values))
    scale = MAD_TO_SD * float(np.median(np.abs(values - median)))
    if scale <= 0.0:
        scale = float(values.std())
    return max(scale, RELATIVE_SCALE_FLOOR * abs(median), 1e-12)


def feature_shift(
    reference: Sequence[float],
    recent: Sequence[float],
    *,
    warn: ShiftThresholds = WARN_SHIFT,
    drift: ShiftThresholds = DRIFT_SHIFT,
    alpha: float = FEATURE_ALPHA,
    min_count: int = MIN_COUNT,
) -> FeatureShift:
    """Compare one scalar feature (brightness, contrast, sharpness, colour balance, score).

    `drifted` when the KS p-value is below `alpha` and D or |shift| reaches `drift`; `warning`
    likewise with `warn`; `insufficient_data` when either side has fewer than `min_count`
    values (the statistics are still reported when both sides have some).
    """
    ref = finite_array(reference, "reference")
    new = finite_array(recent, "recent")
    if ref.size == 0 or new.size == 0:
        return FeatureShift(Status.INSUFFICIENT_DATA, *(None,) * 6, ref.size, new.size, alpha)
    # scipy's exact KS distribution is slow and can fail for big samples; asymptotic is then fine.
    method = "exact" if ref.size * new.size <= 250_000 else "asymp"
    test = stats.ks_2samp(ref, new, method=method)
    d, pvalue = float(test.statistic), float(test.pvalue)
    ref_median, new_median = float(np.median(ref)), float(np.median(new))
    scale = robust_scale(ref)
    shift = (new_median - ref_median) / scale
    severity = max(d / drift.ks, abs(shift) / drift.shift)
    status = grade_status(
        pvalue < alpha,
        d >= drift.ks or abs(shift) >= drift.shift,
        d >= warn.ks or abs(shift) >= warn.shift,
        enough=min(ref.size, new.size) >= min_count,
    )
    return FeatureShift(
        status, d, pvalue, shift, ref_median, new_median, scale, ref.size, new.size, alpha, severity
    )


@dataclass(frozen=True)
class MultiFeatureShift(JsonResult):
    """Per-feature shifts; `status` is the worst, `most_moved` the feature that moved most."""

    status: Status
    features: dict[str, FeatureShift]
    most_moved: str | None
    alpha: float  # the per-feature p-value guard after the Bonferroni correction


def multi_feature_shift(
    reference: Mapping[str, Sequence[float]],
    recent: Mapping[str, Sequence[float]],
    *,
    warn: ShiftThresholds = WARN_SHIFT,
    drift: ShiftThresholds = DRIFT_SHIFT,
    alpha: float = FEATURE_ALPHA,
    min_count: int = MIN_COUNT,
) -> MultiFeatureShift:
    """feature_shift for each feature, with the p-value guard divided by the number of
    features (Bonferroni) so that six features are not six chances of a false alarm."""
    if set(reference) != set(recent):
        missing = sorted(set(reference) ^ set(recent))
        raise ValueError(f"reference and recent must have the same features; differ in {missing}")
    per_feature = alpha / max(len(reference), 1)
    measure = partial(feature_shift, warn=warn, drift=drift, alpha=per_feature, min_count=min_count)
    features = {name: measure(reference[name], recent[name]) for name in reference}
    status = worst_status([shift.status for shift in features.values()])
    most_moved = max(
        (name for name, shift in features.items() if shift.ks_statistic is not None),
        key=lambda name: (_SEVERITY[features[name].status], features[name].severity),
        default=None,
    )
    return MultiFeatureShift(status, features, most_moved, per_feature)


# --- reference estimates for the charts (vision.drift_charts) ------------------------------


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
    values = finite_array(sample, "sample")
    if values.size < 2:
        raise ValueError(f"a reference needs at least 2 values, got {values.size}")
    mean, sd, median = float(values.mean()), float(values.std(ddof=1)), float(np.median(values))
    asymmetry = (mean - median) / sd if sd > 0 else 0.0
    if robust:
        return ReferenceEstimate(median, robust_scale(values), values.size, True, asymmetry)
    return ReferenceEstimate(
        mean, sd if sd > 0 else robust_scale(values), values.size, False, asymmetry
    )


def normal_scores(values: Sequence[float], reference: Sequence[float]) -> np.ndarray:
    """Each value's rank in the reference mapped to a standard normal quantile: in control the
    scores are close to N(0, 1) whatever the feature's distribution, so cusum()/ewma() with
    mean=0, sd=1 keep their normal-theory run lengths on skewed and multi-modal features. Ties
    take mid-ranks; scores stay within about +-3 (a natural clip) for a 500-value reference."""
    ref = np.sort(finite_array(reference, "reference"))
    if ref.size == 0:
        raise ValueError("normal_scores needs a non-empty reference")
    x = finite_array(values, "values")
    below = np.searchsorted(ref, x, side="left")
    up_to = np.searchsorted(ref, x, side="right")
    return special.ndtri((below + up_to + 1.0) / (2.0 * (ref.size + 1.0)))


# --- embeddings -----------------------------------------------------------------------------

# Tuned by simulation with 200 vs 200 rows of 32 dims: one distribution gives AUC 0.50 +- 0.04
# (max 0.61 in 400 runs, never a warning); a 1-SD mean shift in three dims 0.85 (always
# drifted), 1.5 SD in one dim 0.82 (drifted 76%, warning otherwise), 2 SD in one dim 0.89, a
# tripled SD in one dim 0.76 (warning 97%). A 1-SD shift in one dim (0.69) is at the edge.
WARN_AUC = 0.7
DRIFT_AUC = 0.8
# The L2 penalty per training row, so the prior weighs a tenth of the data at any window size.
# Strong shrinkage pays: with 200 vs 200 rows and 32-64 dims an unpenalised fit chases noise
# dimensions, and the AUC is unchanged by the weights' overall scale.
L2_PER_ROW = 0.1
MAX_PER_SIDE = 1000
AUC_SD_INFLATION = 1.5


@dataclass(frozen=True)
class EmbeddingShift(JsonResult):
    """A domain classifier's verdict on whether recent embeddings differ from reference ones."""

    status: Status
    auc: float | None  # cross-validated; 0.5 = indistinguishable, 1.0 = fully separable
    pvalue: float | None  # one-sided, Mann-Whitney's normal approximation widened for CV
    reference_count: int
    recent_count: int
    folds: int
    top_dimensions: tuple[tuple[int, float], ...] = field(default=())  # (dim, weight), largest


def _embedding_pair(
    reference: np.ndarray, recent: np.ndarray, limit: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Both samples checked, subsampled (seeded) to `limit` rows, standardized on the reference."""
    ref = finite_array(reference, "reference", ndim=2)
    new = finite_array(recent, "recent", ndim=2)
    if ref.shape[1] != new.shape[1]:
        raise ValueError(f"dimension mismatch: reference {ref.shape[1]}, recent {new.shape[1]}")
    ref, new = _subsample(ref, limit, rng), _subsample(new, limit, rng)
    if ref.shape[0] == 0:
        return ref, new
    mean, sd = ref.mean(axis=0), ref.std(axis=0)
    # A constant reference dimension keeps a unit scale, so a recent change in it still shows.
    sd = np.where(sd > 1e-12, sd, np.maximum(np.abs(mean) * RELATIVE_SCALE_FLOOR, 1e-12))
    return (ref - mean) / sd, (new - mean) / sd


def _subsample(rows: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    if rows.shape[0] <= limit:
        return rows
    return rows[np.sort(rng.choice(rows.shape[0], size=limit, replace=False))]


def logistic_fit(
    x: np.ndarray, y: np.ndarray, *, l2: float, max_iterations: int = 50
) -> np.ndarray:
    """L2-regularised logistic regression by damped Newton steps: weights for the columns of
    `x` then the intercept (not penalised). Minimises sum(log-loss) + l2/2 * |w|^2."""
    xb = np.hstack([x, np.ones((x.shape[0], 1))])
    penalty = np.full(xb.shape[1], float(l2))
    penalty[-1] = 1e-9  # keeps the Hessian invertible without pulling the intercept

    def objective(w: np.ndarray) -> float:
        z = xb @ w
        return float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * np.sum(penalty * w * w))

    w = np.zeros(xb.shape[1])
    current = objective(w)
    for _ in range(max_iterations):
        p = special.expit(xb @ w)
        gradient = xb.T @ (p - y) + penalty * w
        hessian = (xb.T * (p * (1.0 - p))) @ xb + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        size, candidate = 1.0, w - step
        value = objective(candidate)
        while value > current and size > 1e-6:  # backtracking: every accepted step goes downhill
            size /= 2
            candidate = w - size * step
            value = objective(candidate)
        if value > current:
            break
        w, previous, current = candidate, current, value
        if previous - current < 1e-10 * max(1.0, abs(current)):
            break
    return w


def embedding_shift(
    reference: np.ndarray,
    recent: np.ndarray,
    *,
    seed: int = 0,
    folds: int = 5,
    l2_per_row: float = L2_PER_ROW,
    warn_auc: float = WARN_AUC,
    drift_auc: float = DRIFT_AUC,
    alpha: float = ALPHA,
    min_count: int = MIN_COUNT,
    max_per_side: int = MAX_PER_SIDE,
) -> EmbeddingShift:
    """Domain-classifier two-sample test on (n, d) and (m, d) embeddings.

    Standardizes both on the reference, adds the squares of the standardized values (so a
    change of spread, not only of mean, is learnable), fits an L2 logistic regression with
    stratified `folds`-fold cross-validation (2-5) to tell recent from reference, and reports
    the AUC of the out-of-fold scores. `drifted` when AUC >= drift_auc and p < alpha, `warning`
    likewise with warn_auc. Each side is subsampled (seeded) to at most `max_per_side` rows.
    """
    if not 2 <= folds <= 5:
        raise ValueError(f"folds must be 2-5, got {folds}")
    rng = np.random.default_rng(seed)
    ref, new = _embedding_pair(reference, recent, max_per_side, rng)
    counts = (ref.shape[0], new.shape[0])
    if min(counts) < max(min_count, folds):
        return EmbeddingShift(Status.INSUFFICIENT_DATA, None, None, *counts, folds)
    z = np.vstack([ref, new])
    x = np.hstack([z, (z * z - 1.0) / math.sqrt(2.0)])
    y = np.concatenate([np.zeros(counts[0]), np.ones(counts[1])])
    fold_of = np.empty(y.size, dtype=np.int64)
    for label in (0, 1):  # stratified: every fold holds the same share of each side
        members = np.flatnonzero(y == label)
        fold_of[rng.permutation(members)] = np.arange(members.size) % folds
    scores = np.empty(y.size)
    weights = np.zeros(x.shape[1])
    for fold in range(folds):
        train = fold_of != fold
        w = logistic_fit(x[train], y[train], l2=l2_per_row * int(train.sum()))
        scores[~train] = x[~train] @ w[:-1]
        weights += w[:-1] / folds
    ranks = stats.rankdata(scores)
    n0, n1 = counts
    auc = (float(ranks[y == 1].sum()) - n1 * (n1 + 1) / 2) / (n0 * n1)
    # Out-of-fold scores share overlapping training sets, so their AUC varies 1.3-1.4x more
    # under the null than Mann-Whitney assumes (simulated: 16-64 dims, 2-5 folds, 60-1000 per
    # side); widening it 1.5x keeps the p-value valid (a null p < 0.001 in ~0.03% of runs).
    null_sd = AUC_SD_INFLATION * math.sqrt((n0 + n1 + 1) / (12.0 * n0 * n1))
    pvalue = float(stats.norm.sf((auc - 0.5) / null_sd))
    status = grade_status(pvalue < alpha, auc >= drift_auc, auc >= warn_auc)
    d = ref.shape[1]
    per_dim = np.abs(weights[:d]) + np.abs(weights[d:])  # a dimension's mean and spread terms
    top = tuple((int(i), float(per_dim[i])) for i in np.argsort(-per_dim)[:3])
    return EmbeddingShift(status, auc, pvalue, *counts, folds, top)


@dataclass(frozen=True)
class MmdResult(JsonResult):
    """Unbiased squared maximum mean discrepancy with an RBF kernel; ~0 when the two samples
    come from one distribution. `pvalue` is from label permutations (None when none ran)."""

    mmd2: float | None
    bandwidth: float | None
    pvalue: float | None
    reference_count: int
    recent_count: int


def mmd_rbf(
    reference: np.ndarray,
    recent: np.ndarray,
    *,
    bandwidth: float | None = None,
    permutations: int = 200,
    seed: int = 0,
    max_per_side: int = MAX_PER_SIDE,
) -> MmdResult:
    """Unbiased MMD^2 between (n, d) and (m, d) embeddings standardized on the reference, with
    k(a, b) = exp(-|a - b|^2 / (2 bandwidth^2)); bandwidth defaults to the median pairwise
    distance of the pooled sample (the median heuristic)."""
    rng = np.random.default_rng(seed)
    ref, new = _embedding_pair(reference, recent, max_per_side, rng)
    n, m = ref.shape[0], new.shape[0]
    if n < 2 or m < 2:
        return MmdResult(None, None, None, n, m)
    pooled = np.vstack([ref, new])
    squares = np.sum(pooled * pooled, axis=1)
    distances2 = np.maximum(squares[:, None] + squares[None, :] - 2.0 * pooled @ pooled.T, 0.0)
    if bandwidth is None:
        upper = distances2[np.triu_indices(n + m, k=1)]
        bandwidth = math.sqrt(float(np.median(upper))) or 1.0
    kernel = np.exp(-distances2 / (2.0 * bandwidth**2))
    np.fill_diagonal(kernel, 0.0)
    row_sums = kernel.sum(axis=1)

    def statistic(labels: np.ndarray) -> np.ndarray:
        # labels: (n + m, k) indicator columns of "recent"; one MMD^2 per column.
        other = 1.0 - labels
        k_labels = kernel @ labels
        k_other = row_sums[:, None] - k_labels
        within_new = np.sum(labels * k_labels, axis=0) / (m * (m - 1))
        within_ref = np.sum(other * k_other, axis=0) / (n * (n - 1))
        between = np.sum(other * k_labels, axis=0) / (n * m)
        return within_new + within_ref - 2.0 * between

    observed = float(statistic(np.concatenate([np.zeros(n), np.ones(m)])[:, None])[0])
    pvalue = None
    if permutations > 0:
        shuffled = np.zeros((n + m, permutations))
        for column in range(permutations):
            shuffled[rng.permutation(n + m)[:m], column] = 1.0
        null = statistic(shuffled)
        pvalue = (1.0 + float(np.sum(null >= observed))) / (permutations + 1.0)
    return MmdResult(observed, float(bandwidth), pvalue, n, m)
