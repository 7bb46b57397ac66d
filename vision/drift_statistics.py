"""Two-sample drift statistics for line monitoring: features, embeddings, proportions, alerts.

Every test here decides on an effect size guarded by a p-value, never on a p-value alone: with
thousands of captures a harmless difference is "significant", and with thirty a large one is
not. The control charts (CUSUM, EWMA, p-chart) live in `vision.drift_charts`.
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


def _grade(significant: bool, over_drift: bool, over_warn: bool, *, enough: bool = True) -> Status:
    """A test's status: the effect-size thresholds count only when the p-value guard holds."""
    if not enough:
        return Status.INSUFFICIENT_DATA
    if significant and over_drift:
        return Status.DRIFTED
    return Status.WARNING if significant and over_warn else Status.OK


def _array(values: Sequence[float] | np.ndarray, name: str, ndim: int = 1) -> np.ndarray:
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


# Tuned by simulation (see the tests and the module's report): for a normal feature D = 0.2 is a
# location shift of 0.5 SD and D = 0.3 one of 0.77 SD. On synthetic phones, whose brightness is
# bimodal (dark and light bodies), a 15% brightness drop gives D ~0.35 and a 10% one D ~0.23,
# while stable windows of 100-200 captures against 500 reference ones stay below D ~0.15.
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
    ref = _array(reference, "reference")
    new = _array(recent, "recent")
    if ref.size == 0 or new.size == 0:
        return FeatureShift(
            Status.INSUFFICIENT_DATA, None, None, None, None, None, None, ref.size, new.size, alpha
        )
    # scipy's exact KS distribution is slow and can fail for big samples; asymptotic is then fine.
    method = "exact" if ref.size * new.size <= 250_000 else "asymp"
    test = stats.ks_2samp(ref, new, method=method)
    d, pvalue = float(test.statistic), float(test.pvalue)
    ref_median, new_median = float(np.median(ref)), float(np.median(new))
    scale = robust_scale(ref)
    shift = (new_median - ref_median) / scale
    severity = max(d / drift.ks, abs(shift) / drift.shift)
    status = _grade(
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
    ranked = sorted(
        (name for name, shift in features.items() if shift.ks_statistic is not None),
        key=lambda name: (_SEVERITY[features[name].status], features[name].severity),
    )
    return MultiFeatureShift(status, features, ranked[-1] if ranked else None, per_feature)


# --- embeddings -----------------------------------------------------------------------------

# Tuned by simulation with 200 vs 200 samples of 32 dims: identical distributions give a
# cross-validated AUC of 0.50 +- 0.03 (max ~0.58 over 500 trials); a 1-SD mean shift in three
# dimensions gives ~0.85, a 1.5-SD shift of one dimension ~0.80 and a doubled SD in one ~0.8.
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
    ref = _array(reference, "reference", ndim=2)
    new = _array(recent, "recent", ndim=2)
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
        size = 1.0
        while size > 1e-6:  # backtracking keeps every step downhill on nearly separable data
            candidate = w - size * step
            value = objective(candidate)
            if value <= current:
                break
            size /= 2
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
    status = _grade(pvalue < alpha, auc >= drift_auc, auc >= warn_auc)
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


# --- proportions ----------------------------------------------------------------------------


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
    test_name = "binomtest" if fixed_reference else "fisher_exact"
    counts = (direction, test_name, reference_rate, recent_successes, recent_total)
    counts += (reference_successes, reference_total)
    if recent_total == 0:
        return ProportionShift(Status.INSUFFICIENT_DATA, None, None, None, None, None, *counts)
    rate = recent_successes / recent_total
    change = rate - reference_rate
    ratio = rate / reference_rate if reference_rate > 0 else None
    alternative = _ALTERNATIVE[direction]
    if fixed_reference:
        test = stats.binomtest(recent_successes, recent_total, reference_rate, alternative)
        pvalue = float(test.pvalue)
    else:
        table = [
            [recent_successes, recent_total - recent_successes],
            [reference_successes, reference_total - reference_successes],
        ]
        pvalue = float(stats.fisher_exact(table, alternative=alternative).pvalue)

    def moved(limits: RateThresholds) -> bool:
        up = change >= limits.change and (ratio is None or ratio >= limits.ratio)
        down = -change >= limits.change and (ratio is None or ratio * limits.ratio <= 1.0)
        return {"up": up, "down": down, "both": up or down}[direction]

    status = _grade(pvalue < alpha, moved(drift), moved(warn), enough=recent_total >= min_count)
    interval = stats.binomtest(recent_successes, recent_total).proportion_ci(method="wilson")
    ci = (float(interval.low), float(interval.high))
    return ProportionShift(status, rate, ci, change, ratio, pvalue, *counts)
