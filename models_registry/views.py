"""Registry pages under /models/: versions and training runs, a run's live progress, a
version's evaluation beside production and its rollout on every line."""

from pathlib import Path

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, render

from core.models import ProductionLine
from core.roles import Role, user_has_role
from models_registry import benchmarks, selectors, services
from models_registry.models import (
    BatchPrediction,
    DataSource,
    Deployment,
    Evaluation,
    ModelVersion,
    RolloutEvent,
    TrainingRun,
)
from models_registry.services.evaluation import evaluation_folder


def _supervisor(request) -> None:
    if not user_has_role(request.user, Role.SUPERVISOR, Role.ADMIN):
        raise PermissionDenied("The model registry is for supervisors.")


@login_required
def index(request):
    _supervisor(request)
    services.jobs_reap()  # a run whose worker died shows as failed, not running forever
    from labeling.models import DatasetVersion

    return render(
        request,
        "models_registry/index.html",
        {
            "versions": ModelVersion.objects.select_related(
                "parent", "dataset_version", "created_by"
            ).prefetch_related("deployments__line")[:50],
            "runs": TrainingRun.objects.select_related("line", "model_version")[:15],
            "batches": BatchPrediction.objects.select_related("model_version", "line")[:10],
            "data_sources": DataSource.choices,
            "dataset_versions": DatasetVersion.objects.all()[:30],
            "lines": ProductionLine.objects.all(),
            "benchmarks": benchmarks.choices(),
            "presets": list(services.TRAINING_PRESETS),
        },
    )


@login_required
def training_run(request, run_id: int):
    _supervisor(request)
    services.jobs_reap()
    run = get_object_or_404(
        TrainingRun.objects.select_related("line", "parent", "model_version", "dataset_version"),
        pk=run_id,
    )
    return render(request, "models_registry/run.html", {"run": run})


@login_required
def model_version(request, version_id: int):
    _supervisor(request)
    version = get_object_or_404(
        ModelVersion.objects.select_related("parent", "dataset_version", "created_by"),
        pk=version_id,
    )
    rollouts = selectors.line_rollouts(model_version=version)
    # Compare with the production model of the chosen line (or the first line it serves on).
    chosen = request.GET.get("line") or next(
        (r.line.code for r in rollouts if r.role), rollouts[0].line.code if rollouts else ""
    )
    production = (
        Deployment.objects.filter(line__code=chosen, role="production")
        .select_related("model_version")
        .first()
    )
    reference = production.model_version if production else version.parent
    mine, theirs = (None, None)
    if reference is not None and reference.pk != version.pk:
        mine, theirs = selectors.evaluation_pair(model_version=version, production=reference)
    if mine is None:
        mine = version.evaluations.filter(status="succeeded").order_by("-finished_at").first()
    return render(
        request,
        "models_registry/version.html",
        {
            "version": version,
            "rollouts": rollouts,
            "chosen_line": chosen,
            "reference": reference,
            "mine": mine,
            "theirs": theirs,
            "comparison": selectors.comparison_rows(mine, theirs),
            "evaluations": version.evaluations.all()[:10],
            "events": (
                RolloutEvent.objects.filter(model_version=version)
                | RolloutEvent.objects.filter(previous_model_version=version)
            ).select_related("line", "user", "model_version", "previous_model_version")[:40],
            "benchmarks": benchmarks.choices(),
            "lineage": _lineage(version),
            "ramp_steps": services.RAMP_STEPS,
        },
    )


def _lineage(version: ModelVersion) -> list[ModelVersion]:
    chain, seen = [], {version.pk}
    parent = version.parent
    while parent is not None and parent.pk not in seen and len(chain) < 10:
        chain.append(parent)
        seen.add(parent.pk)
        parent = parent.parent
    return chain


@login_required
def evaluation_overlay(request, evaluation_id: int, name: str):
    _supervisor(request)
    evaluation = get_object_or_404(Evaluation, pk=evaluation_id)
    if "/" in name or "\\" in name or name.startswith("."):
        raise Http404("No such overlay.")
    path = Path(evaluation_folder(evaluation)) / name
    if not path.is_file():
        raise Http404("No such overlay.")
    return FileResponse(path.open("rb"), content_type="image/png")
