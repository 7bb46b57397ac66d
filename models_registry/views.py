"""Registry pages under /models/: versions and training runs, a run's live progress, a
version's evaluation beside production and its rollout on every line."""

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, render

from core import blobs
from core import selectors as core_selectors
from core.permissions import page_roles_required
from core.roles import SUPERVISING
from labeling import selectors as labeling_selectors
from models_registry import benchmarks, selectors, services
from models_registry.models import DataSource, Evaluation
from models_registry.services.evaluation import evaluation_overlay_name


def _supervisor(request) -> None:
    page_roles_required(request, *SUPERVISING, message="The model registry is for supervisors.")


@login_required
def index(request):
    _supervisor(request)
    return render(
        request,
        "models_registry/index.html",
        {
            "versions": selectors.model_version_list()[:50],
            "runs": selectors.training_runs()[:15],
            "batches": selectors.batch_predictions()[:10],
            "data_sources": DataSource.choices,
            "dataset_versions": labeling_selectors.dataset_version_list(limit=30),
            "lines": core_selectors.line_list(),
            "benchmarks": benchmarks.choices(),
            "presets": list(services.TRAINING_PRESETS),
        },
    )


@login_required
def training_run(request, run_id: int):
    _supervisor(request)
    run = get_object_or_404(selectors.training_runs(), pk=run_id)
    return render(request, "models_registry/run.html", {"run": run})


@login_required
def model_version(request, version_id: int):
    _supervisor(request)
    version = get_object_or_404(selectors.model_versions(), pk=version_id)
    rollouts = selectors.line_rollouts(model_version=version)
    # Compare with the production model of the chosen line (or the first line it serves on).
    chosen = request.GET.get("line") or next(
        (r.line.code for r in rollouts if r.role), rollouts[0].line.code if rollouts else ""
    )
    production = selectors.production_model_version(line_code=chosen)
    reference = production or version.parent
    mine, theirs = (None, None)
    if reference is not None and reference.pk != version.pk:
        mine, theirs = selectors.evaluation_pair(model_version=version, production=reference)
    if mine is None:
        mine = selectors.latest_evaluation(model_version=version)
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
            "events": selectors.rollout_events(model_version=version),
            "benchmarks": benchmarks.choices(),
            "lineage": selectors.lineage(model_version=version),
            "ramp_steps": services.RAMP_STEPS,
        },
    )


@login_required
def evaluation_overlay(request, evaluation_id: int, name: str):
    _supervisor(request)
    evaluation = get_object_or_404(Evaluation, pk=evaluation_id)
    if "/" in name or "\\" in name or name.startswith("."):
        raise Http404("No such overlay.")
    try:
        stream = blobs.blob_open(evaluation_overlay_name(evaluation, name), store=blobs.MODELS)
    except FileNotFoundError:
        raise Http404("No such overlay.") from None
    return FileResponse(stream, content_type="image/png")
