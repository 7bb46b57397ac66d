"""Training runs: started by a supervisor (or the auto-retrain schedule), executed in a Celery
worker on the `training` queue, cancelled through a flag the training loop reads, ending in a
candidate ModelVersion that is then evaluated next to the line's production model."""

import dataclasses
import logging
import shutil
import traceback
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core import blobs
from core.errors import ApplicationError
from labeling import selectors as labeling_selectors
from labeling import services as labeling_services
from models_registry import benchmarks
from models_registry.models import (
    DataSource,
    Deployment,
    JobStatus,
    LineTrainingPolicy,
    TrainingRun,
)
from models_registry.services import evaluation as evaluation_services
from models_registry.services.jobs import (
    JobReporter,
    job_claim,
    job_create,
    job_finish,
    worker_identity,
)
from models_registry.services.registry import model_version_register
from vision.synth import synth_items
from vision.train import TrainConfig, TrainingCancelled, train

logger = logging.getLogger(__name__)

# Presets the page offers; the API also takes any TrainConfig field in `config`.
TRAINING_PRESETS = {
    "smoke": {"max_steps": 2, "steps_per_epoch": 2, "batch_size": 4, "crop": 64, "minutes": 1},
    "quick": {"minutes": 1.5},
    "standard": {"minutes": 4},
}
_CONFIG_FIELDS = {
    "minutes",
    "max_epochs",
    "steps_per_epoch",
    "batch_size",
    "crop",
    "learning_rate",
    "patience",
    "seed",
    "max_steps",
    "threads",
    "positive_cell_weight",
    "hard_negative_share",
    "hard_positive_share",
    "mine_images",
    "rotate",
    "scale_jitter",
    "region_threshold",
}


def _clean_config(config: dict | None, preset: str = "") -> dict:
    if preset and preset not in TRAINING_PRESETS:
        raise ApplicationError(
            f"Unknown preset {preset!r}; use one of {', '.join(TRAINING_PRESETS)}.",
            code="invalid_preset",
        )
    merged = {**TRAINING_PRESETS.get(preset, {}), **(config or {})}
    unknown = set(merged) - _CONFIG_FIELDS - {"image_size"}
    if unknown:
        raise ApplicationError(
            f"Unknown training settings: {', '.join(sorted(unknown))}.", code="invalid_config"
        )
    return merged


@transaction.atomic
def training_run_start(
    *,
    user: Any,
    data_source: str,
    dataset_version: Any = None,
    synthetic_count: int = 0,
    synthetic_seed: int = 0,
    line: Any = None,
    benchmark: str = "",
    config: dict | None = None,
    preset: str = "",
    name: str = "scratchnet",
    automatic: bool = False,
) -> TrainingRun:
    """Queue a training run. "All reviewed labels now" freezes a new dataset version first, so
    the run (and the model) name exactly the data they saw."""
    if data_source not in DataSource.values:
        raise ApplicationError(
            f"data_source must be one of {', '.join(DataSource.values)}.", code="invalid_source"
        )
    if benchmark:
        benchmark = benchmarks.parse(benchmark).key
    extra: dict[str, Any] = {}
    if data_source == DataSource.REVIEWED_NOW:
        dataset_version = labeling_services.dataset_version_create(
            name=f"reviewed {timezone.now():%Y-%m-%d %H:%M}", created_by=user
        )
    if data_source in (DataSource.DATASET, DataSource.REVIEWED_NOW):
        if dataset_version is None:
            raise ApplicationError("Choose a dataset version to train on.", code="no_dataset")
        extra["dataset_version"] = dataset_version
    elif not 8 <= synthetic_count <= 20000:
        raise ApplicationError("synthetic_count must be between 8 and 20000.", code="invalid_count")
    parent = None
    if line is not None:
        production = Deployment.objects.filter(line=line, role="production").first()
        parent = production.model_version if production else None
    return job_create(
        TrainingRun,
        task="models_registry.training_run_execute",
        user=user,
        name=name or "scratchnet",
        data_source=data_source,
        synthetic_count=synthetic_count if data_source == DataSource.SYNTHETIC else 0,
        synthetic_seed=synthetic_seed,
        config=_clean_config(config, preset),
        line=line,
        parent=parent,
        benchmark=benchmark,
        automatic=automatic,
        **extra,
    )


@transaction.atomic
def training_run_cancel(*, run: TrainingRun, user: Any) -> TrainingRun:
    """Stop a run: a queued one at once; a running one within a second or so (the training loop
    reads the flag between steps and the worker marks it cancelled)."""
    run = TrainingRun.objects.select_for_update().get(pk=run.pk)
    if run.finished:
        raise ApplicationError(
            f"Training run {run.pk} already {run.status}.", code="finished", status=409
        )
    run.cancel_requested = True
    fields = ["cancel_requested"]
    if run.status == JobStatus.QUEUED:
        run.status = JobStatus.CANCELLED
        run.finished_at = timezone.now()
        fields += ["status", "finished_at"]
    run.log = (run.log + "\n" if run.log else "") + (
        f"{timezone.now():%H:%M:%S} cancel requested by {getattr(user, 'username', 'system')}"
    )
    run.save(update_fields=[*fields, "log"])
    return run


def _training_items(run: TrainingRun) -> tuple[list, list | None, str]:
    """(training items, validation items or None to split them, what the data was in words)."""
    if run.data_source == DataSource.SYNTHETIC:
        width, height = run.config.get("image_size", (256, 144))
        items = synth_items(run.synthetic_count, seed=run.synthetic_seed, size=(width, height))
        return items, None, f"synthetic:{run.synthetic_count}:{run.synthetic_seed}"
    version = run.dataset_version
    train_items = benchmarks.dataset_items(dataset_version=version, split="train")
    val_items = benchmarks.dataset_items(dataset_version=version, split="validation")
    label = f"dataset {getattr(version, 'name', version.pk)} (train split)"
    return train_items, (val_items or None), label


def _train_config(run: TrainingRun) -> Any:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in run.config.items() if k in fields}
    values.setdefault("threads", settings.TRAINING_THREADS or None)
    return TrainConfig(**values)


class _TrainingProgress:
    """The trainer's progress events, written to the run's row (progress bar, epochs, log)."""

    def __init__(self, reporter: JobReporter) -> None:
        self.reporter = reporter
        self.history: list[dict] = []

    def __call__(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "loading":
            self.reporter.log(f"loading {event['items']} images")
            self.reporter.update(force=True)
        elif kind == "step":
            self.reporter.update(
                progress=min(float(event["fraction"]), 0.99),
                epoch=event["epoch"],
                step=event["step"],
                total_steps=event["total_steps"],
                last_loss=float(event["loss"]),
            )
        elif kind == "recipe":
            recipe = {k: v for k, v in event.items() if k != "event"}
            chosen = [
                f"{c['setting']}={c['value']}" for c in recipe.get("choices", []) if c["chosen"]
            ]
            self.reporter.log(
                f"{recipe.get('kind', 'supervised')} model; chosen from the data: "
                + (", ".join(chosen) or "nothing (all set)")
            )
            self.reporter.update(force=True, recipe=recipe)
        elif kind == "epoch":
            self._epoch(event)

    def _epoch(self, event: dict) -> None:
        entry = {
            k: (round(v, 5) if isinstance(v, float) else v)
            for k, v in event.items()
            if k != "event"
        }
        self.history.append(entry)
        validation = ", ".join(
            f"{k} {v:.4f}" for k, v in event.items() if k.startswith("val_") and v is not None
        )
        self.reporter.log(
            f"epoch {event['epoch']}: train loss {event['train_loss']:.4f}, {validation}"
        )
        self.reporter.update(force=True, history=list(self.history), epoch=event["epoch"])


def _train_and_register(run: TrainingRun, reporter: JobReporter, progress: _TrainingProgress):
    items, val_items, described = _training_items(run)
    result = train(
        items,
        config=_train_config(run),
        progress=progress,
        should_stop=reporter.should_stop,
        val_items=val_items,
    )
    folder = blobs.blob_scratch(f"training-{run.pk}")
    try:
        path = folder / f"run-{run.pk}.pt"
        result.save(path)
        version = model_version_register(
            path=path,
            name=run.name,
            user=run.created_by,
            parent=run.parent,
            dataset_version=run.dataset_version,
            training_data=described,
            notes=f"Training run {run.pk} ({result.stopped_because}).",
        )
    finally:  # registered: the registry keeps its own copy by hash
        shutil.rmtree(folder, ignore_errors=True)
    reporter.log(f"registered {version} ({version.sha256[:12]}); {result.stopped_because}")
    return version


def training_run_execute(*, run_id: int, hostname: str = "") -> TrainingRun | None:
    """Run a queued training run in this worker. Idempotent: anything but a queued run is left
    as it is (a redelivered message after a worker died finds it failed or finished)."""
    run = job_claim(TrainingRun, run_id, worker_id=worker_identity(hostname))
    if run is None:
        return None
    reporter = JobReporter(run)
    reporter.log(f"started on {run.worker_id}")
    progress = _TrainingProgress(reporter)
    try:
        version = _train_and_register(run, reporter, progress)
        reporter.close()
        finished = job_finish(
            run,
            JobStatus.SUCCEEDED,
            log=reporter.log_text,
            model_version=version,
            history=progress.history,
        )
        if finished and run.benchmark:
            evaluation_services.evaluation_request_with_production(
                model_version=version,
                benchmark=run.benchmark,
                line=run.line,
                user=run.created_by,
            )
    except TrainingCancelled as exc:
        reporter.log(f"cancelled: {exc}")
        reporter.close()
        job_finish(run, JobStatus.CANCELLED, log=reporter.log_text)
    except SoftTimeLimitExceeded:
        reporter.log("stopped: the task's time limit was reached")
        reporter.close()
        job_finish(run, JobStatus.FAILED, error="time limit reached", log=reporter.log_text)
    except Exception as exc:
        reporter.log(traceback.format_exc())
        reporter.close()
        job_finish(
            run, JobStatus.FAILED, error=f"{type(exc).__name__}: {exc}", log=reporter.log_text
        )
    finally:
        reporter.close()
    run.refresh_from_db()
    return run


def auto_retrain_check(*, now: Any = None) -> list[TrainingRun]:
    """Start a run on every line whose policy asks for one and has enough new reviewed labels
    since the last automatic start (never two runs of a line at once)."""
    now = now or timezone.now()
    started = []
    for policy in LineTrainingPolicy.objects.filter(auto_retrain=True).select_related("line"):
        busy = TrainingRun.objects.filter(
            line=policy.line, status__in=(JobStatus.QUEUED, JobStatus.RUNNING)
        ).exists()
        if busy:
            continue
        new = labeling_selectors.reviewed_annotations_since(
            line=policy.line, since=policy.last_triggered_at
        )
        if new < policy.min_new_labels:
            continue
        run = training_run_start(
            user=None,
            data_source=DataSource.REVIEWED_NOW,
            line=policy.line,
            benchmark=policy.benchmark,
            config=policy.config,
            automatic=True,
        )
        LineTrainingPolicy.objects.filter(pk=policy.pk).update(last_triggered_at=now)
        logger.info("auto-retrain on %s: %s new reviewed labels, run %s", policy.line, new, run.pk)
        started.append(run)
    return started
