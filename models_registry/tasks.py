"""Celery entry points of the registry: each fetches by id and calls one service.

Training goes to the `training` queue (config/settings.py CELERY_TASK_ROUTES), so GPU workers
can take it: `celery -A config worker -Q training`. Time limits come from settings
(CELERY_TASK_ANNOTATIONS); the beat checks, which run every minute, stop within one.
Every task is idempotent: the service runs only a queued job.
"""

from celery import shared_task

from models_registry.services import edge, evaluation, jobs, rollout, training


@shared_task(name="models_registry.training_run_execute", bind=True, acks_late=True)
def training_run_execute(self, run_id: int) -> str | None:
    run = training.training_run_execute(run_id=run_id, hostname=self.request.hostname or "")
    return run.status if run else None


@shared_task(name="models_registry.evaluation_run_execute", bind=True, acks_late=True)
def evaluation_run_execute(self, evaluation_id: int) -> str | None:
    result = evaluation.evaluation_execute(
        evaluation_id=evaluation_id, hostname=self.request.hostname or ""
    )
    return result.status if result else None


@shared_task(
    name="models_registry.edge_export_execute", acks_late=True, soft_time_limit=300, time_limit=330
)
def edge_export_execute(model_version_id: int) -> str | None:
    """Export a registered version to ONNX for the stations (training queue: CPU-heavy)."""
    state = edge.edge_export_execute(model_version_id=model_version_id)
    return state.get("status") if state else None


@shared_task(name="models_registry.canary_check", acks_late=True, soft_time_limit=50, time_limit=60)
def canary_check() -> int:
    """Beat: automatic canary rollback (override rate over its bound) and scheduled ramps."""
    return len(rollout.canary_check())


@shared_task(name="models_registry.jobs_reap", acks_late=True, soft_time_limit=50, time_limit=60)
def jobs_reap() -> int:
    """Beat: jobs whose worker died (no heartbeat) become failed, 'worker lost'."""
    return len(jobs.jobs_reap())


@shared_task(
    name="models_registry.auto_retrain_check", acks_late=True, soft_time_limit=50, time_limit=60
)
def auto_retrain_check() -> int:
    """Beat: start training on lines with enough new reviewed labels (their setting)."""
    return len(training.auto_retrain_check())
