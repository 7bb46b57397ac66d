"""Batch prediction jobs: a supervisor asks for the stored captures of a date range to be scored
again with a chosen version; the worker's part, which reads the captures and their verdicts,
is inspection.services.rescoring (task `models_registry.batch_predict_execute`)."""

from datetime import datetime
from typing import Any

from django.db import transaction

from core.errors import ApplicationError
from models_registry.models import BatchPrediction, ModelVersion
from models_registry.services.jobs import job_create


@transaction.atomic
def batch_prediction_start(
    *,
    model_version: ModelVersion,
    received_after: datetime,
    received_before: datetime,
    line: Any = None,
    user: Any = None,
) -> BatchPrediction:
    if received_before <= received_after:
        raise ApplicationError("The range must end after it starts.", code="invalid_range")
    # The scoring itself reads captures: inspection.services.rescoring, behind this task name.
    return job_create(
        BatchPrediction,
        task="models_registry.batch_predict_execute",
        user=user,
        model_version=model_version,
        line=line,
        received_after=received_after,
        received_before=received_before,
    )
