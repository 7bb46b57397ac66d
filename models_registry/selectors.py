"""Reads of the registry: which models serve a line, the promotion gate, each line's rollout of
a version with its evidence (models_registry.evidence), and what the registry pages list."""

import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Prefetch, QuerySet
from django.db.models.fields.json import KT

from core.models import ProductionLine
from models_registry import evidence
from models_registry.models import (
    BatchPrediction,
    Deployment,
    Evaluation,
    JobStatus,
    ModelVersion,
    RolloutAction,
    RolloutEvent,
    TrainingRun,
)


@dataclass(frozen=True)
class ServingModel:
    role: str
    model_version_id: int
    sha256: str
    artifact: str
    canary_percent: float


_cache: dict[int, tuple[float, dict[str, ServingModel]]] = {}
_cache_lock = threading.Lock()


def line_serving_models(*, line_id: int) -> dict[str, ServingModel]:
    """The models deployed on a line, by role (production / shadow / canary).

    Kept per process for SERVING_DEPLOYMENT_CACHE_SECONDS (default 2 s): one query less per
    capture; a rollout or rollback reaches every web process within that time.
    """
    ttl = settings.SERVING_DEPLOYMENT_CACHE_SECONDS
    now = time.monotonic()
    if ttl > 0:
        cached = _cache.get(line_id)
        if cached and cached[0] > now:
            return cached[1]
    rows = Deployment.objects.filter(line_id=line_id).values_list(
        "role",
        "model_version_id",
        "model_version__sha256",
        "model_version__artifact",
        "canary_percent",
    )
    models = {row[0]: ServingModel(*row) for row in rows}
    if ttl > 0:
        with _cache_lock:
            _cache[line_id] = (now + ttl, models)
    return models


def forget_line_serving_models(line_id: int | None = None) -> None:
    with _cache_lock:
        if line_id is None:
            _cache.clear()
        else:
            _cache.pop(line_id, None)


# --- Rollout reads: the gate, the canary's record, the shadow's agreement ---

# Compared on the benchmark, higher is better; a candidate may fall short of production by at
# most REGISTRY_GATE_MARGIN on each.
GATE_METRICS = ("auroc", "f1", "recall")


@dataclass(frozen=True)
class GateComparison:
    metric: str
    candidate: float | None
    production: float | None
    ok: bool

    @property
    def delta(self) -> float | None:
        if self.candidate is None or self.production is None:
            return None
        return self.candidate - self.production


@dataclass(frozen=True)
class Gate:
    ok: bool
    reason: str  # in the supervisor's words: why it may or may not be promoted
    benchmark: str = ""
    margin: float = 0.0
    comparisons: tuple[GateComparison, ...] = ()


def _succeeded_evaluations(model_version_id: int) -> dict[str, Any]:
    evaluations = Evaluation.objects.filter(
        model_version_id=model_version_id, status=JobStatus.SUCCEEDED
    ).order_by("-finished_at", "-id")
    latest: dict[str, Any] = {}
    for evaluation in evaluations:
        latest.setdefault(evaluation.benchmark, evaluation)
    return latest


def evaluation_pair(*, model_version: Any, production: Any) -> tuple[Any, Any]:
    """The newest evaluations of both versions on one benchmark (None, None when none shared)."""
    mine = _succeeded_evaluations(model_version.pk)
    theirs = _succeeded_evaluations(production.pk) if production else {}
    for benchmark, evaluation in mine.items():  # newest first
        if benchmark in theirs:
            return evaluation, theirs[benchmark]
    return None, None


def promotion_gate(*, model_version: Any, line: Any) -> Gate:
    """May `model_version` decide on `line` (canary or production)? Not when it is worse than
    the line's production model on a shared benchmark by more than the margin."""
    margin = float(settings.REGISTRY_GATE_MARGIN)
    production = (
        Deployment.objects.filter(line=line, role="production")
        .select_related("model_version")
        .defer("model_version__metadata")  # its training reference: ~100 KB, not needed here
    ).first()
    if production is None or production.model_version_id == model_version.pk:
        return Gate(True, f"No other production model on {line.code} to compare with.")
    current = production.model_version
    mine, theirs = evaluation_pair(model_version=model_version, production=current)
    if mine is None:
        return Gate(
            False,
            f"Refused: {model_version} and the production model {current} have no evaluation "
            f"on the same benchmark yet. Evaluate both on one benchmark first.",
            margin=margin,
        )
    comparisons = []
    for metric in GATE_METRICS:
        candidate, reference = mine.metrics.get(metric), theirs.metrics.get(metric)
        ok = candidate is None or reference is None or candidate >= reference - margin
        comparisons.append(GateComparison(metric, candidate, reference, ok))
    worse = [c for c in comparisons if not c.ok]
    label = mine.benchmark_label or mine.benchmark
    if worse:
        details = ", ".join(
            f"{c.metric} {c.candidate:.3f} vs {c.production:.3f} ({c.delta:+.3f})" for c in worse
        )
        reason = (
            f"Refused: {model_version} is worse than the production model {current} on "
            f"{label} beyond the {margin:g} margin: {details}."
        )
    else:
        reason = (
            f"{model_version} is within {margin:g} of the production model {current} (or "
            f"better) on {label}."
        )
    return Gate(not worse, reason, mine.benchmark, margin, tuple(comparisons))


@dataclass(frozen=True)
class LineRollout:
    """One line as the version page shows it: what serves there, and what this version may do."""

    line: Any
    deployments: dict[str, Deployment]
    role: str | None  # this version's role on the line, if any
    gate: Gate
    rollback_target: Any
    canary: evidence.CanaryRecord | None
    shadow_agreement: list[evidence.AgreementBucket]


def line_rollouts(*, model_version: Any) -> list[LineRollout]:
    rows = []
    # Its shadow predictions exist only where it ran as shadow (each start is audited): the
    # other lines' agreement is empty without reading their captures.
    shadowed = set(
        RolloutEvent.objects.filter(
            model_version=model_version, action=RolloutAction.SHADOW_START
        ).values_list("line_id", flat=True)
    )
    deployments = Deployment.objects.select_related("model_version").defer(
        "model_version__metadata"
    )
    lines = ProductionLine.objects.prefetch_related(Prefetch("deployments", queryset=deployments))
    for line in lines:
        deployments = {d.role: d for d in line.deployments.all()}
        role = next(
            (r for r, d in deployments.items() if d.model_version_id == model_version.pk), None
        )
        production = deployments.get("production")
        previous = None
        if production is not None:
            promotion = RolloutEvent.objects.filter(
                line=line,
                action=RolloutAction.PROMOTE,
                model_version_id=production.model_version_id,
            ).first()
            previous = promotion.previous_model_version if promotion else None
        canary = deployments.get("canary")
        rows.append(
            LineRollout(
                line=line,
                deployments=deployments,
                role=role,
                gate=promotion_gate(model_version=model_version, line=line),
                rollback_target=previous,
                canary=evidence.canary_record(deployment=canary) if canary else None,
                shadow_agreement=(
                    evidence.shadow_agreement(line=line, model_version=model_version)[:24]
                    if role == "shadow" or line.pk in shadowed
                    else []
                ),
            )
        )
    return rows


def comparison_rows(mine: Any, theirs: Any) -> list[dict[str, Any]]:
    """Side-by-side metric rows of two evaluations on one benchmark."""
    names = [
        ("auroc", "AUROC"),
        ("average_precision", "Average precision"),
        ("precision", "Precision (at fail threshold)"),
        ("recall", "Recall (at fail threshold)"),
        ("f1", "F1 (at fail threshold)"),
        ("flagged_recall", "Defects flagged (at pass threshold)"),
        ("automated_share", "Automated share"),
        ("pixel_iou", "Pixel IoU"),
        ("region_recall", "Region recall"),
        ("pass_threshold", "Pass threshold"),
        ("fail_threshold", "Fail threshold"),
    ]
    rows = []
    for key, label in names:
        a = mine.metrics.get(key) if mine else None
        b = theirs.metrics.get(key) if theirs else None
        if a is None and b is None:
            continue
        delta = a - b if isinstance(a, int | float) and isinstance(b, int | float) else None
        rows.append(
            {
                "key": key,
                "label": label,
                "candidate": a,
                "production": b,
                "delta": delta,
                # Thresholds and the automated share are settings and trade-offs, not scores.
                "judged": key not in ("pass_threshold", "fail_threshold", "automated_share"),
            }
        )
    return rows


# What the registry pages read.


def model_versions() -> QuerySet[ModelVersion]:
    """Versions newest first, with what their pages show beside them."""
    return ModelVersion.objects.select_related(
        "parent", "dataset_version", "created_by"
    ).prefetch_related("deployments__line")


def model_version_list() -> QuerySet[ModelVersion]:
    """The registry's list: versions newest first with their kind (supervised or good images
    only) read out of the metadata by the database."""
    return model_versions().annotate(kind=KT("metadata__kind"))


def training_runs() -> QuerySet[TrainingRun]:
    return TrainingRun.objects.select_related("line", "parent", "model_version", "dataset_version")


def batch_predictions() -> QuerySet[BatchPrediction]:
    return BatchPrediction.objects.select_related("model_version", "line")


def production_model_version(*, line_code: str) -> ModelVersion | None:
    deployment = (
        Deployment.objects.filter(line__code=line_code, role="production")
        .select_related("model_version")
        .first()
    )
    return deployment.model_version if deployment else None


def latest_evaluation(*, model_version: Any) -> Evaluation | None:
    return (
        model_version.evaluations.filter(status=JobStatus.SUCCEEDED)
        .order_by("-finished_at")
        .first()
    )


def rollout_events(*, model_version: Any, limit: int = 40) -> QuerySet[RolloutEvent]:
    """Rollout changes that put this version in place or took it out."""
    return (
        RolloutEvent.objects.filter(model_version=model_version)
        | RolloutEvent.objects.filter(previous_model_version=model_version)
    ).select_related("line", "user", "model_version", "previous_model_version")[:limit]


def lineage(*, model_version: Any, depth: int = 10) -> list[ModelVersion]:
    """The version's parents, nearest first."""
    chain, seen = [], {model_version.pk}
    parent = model_version.parent
    while parent is not None and parent.pk not in seen and len(chain) < depth:
        chain.append(parent)
        seen.add(parent.pk)
        parent = parent.parent
    return chain


def line_deployments(*, line: Any) -> QuerySet[Deployment]:
    return Deployment.objects.filter(line=line).select_related("line", "model_version")
