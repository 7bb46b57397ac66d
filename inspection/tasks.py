"""Celery entry points of inspection: each fetches by id and calls one service."""

from celery import shared_task

from inspection.services import predictions, rescoring, retention


@shared_task(
    name="inspection.capture_predict_offline",
    acks_late=True,
    soft_time_limit=50,
    time_limit=60,
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=3,
)
def capture_predict_offline(capture_id: str, role: str = "shadow") -> int | None:
    """Run a non-acting model (shadow) on a stored capture, off the station's request path."""
    prediction = predictions.prediction_record_offline(capture_id=capture_id, role=role)
    return prediction.pk if prediction else None


@shared_task(name="inspection.retention_apply", acks_late=True, soft_time_limit=540, time_limit=600)
def retention_apply() -> dict:
    """Beat, hourly: delete capture images past their line's retention (bounded batches)."""
    return retention.retention_apply().to_dict()


# The name is the registry's: the registry queues the job (models_registry.services.batch) and
# the scoring, which reads captures, runs here. Its time limits are the jobs' (settings).
@shared_task(name="models_registry.batch_predict_execute", bind=True, acks_late=True)
def batch_predict_execute(self, batch_id: int) -> str | None:
    result = rescoring.batch_predict_execute(
        batch_id=batch_id, hostname=self.request.hostname or ""
    )
    return result.status if result else None
