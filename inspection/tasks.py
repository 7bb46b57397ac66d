"""Celery entry points of inspection: each fetches by id and calls one service."""

from celery import shared_task

from inspection import services


@shared_task(
    name="inspection.capture_predict_offline",
    acks_late=True,
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=3,
)
def capture_predict_offline(capture_id: str, role: str = "shadow") -> int | None:
    """Run a non-acting model (shadow) on a stored capture, off the station's request path."""
    prediction = services.prediction_record_offline(capture_id=capture_id, role=role)
    return prediction.pk if prediction else None
