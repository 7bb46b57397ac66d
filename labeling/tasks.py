"""Celery entry points of labeling: each fetches by id and calls one service.

`labeling.dataset_import_execute` has its time limits from settings (CELERY_TASK_ANNOTATIONS,
DATASET_IMPORT_SOFT_TIME_LIMIT); the values here are the defaults. Idempotent: only a queued
import (or one whose worker went silent) runs.
"""

from celery import shared_task

from labeling.services import imports


@shared_task(
    name="labeling.dataset_import_execute", acks_late=True, soft_time_limit=3600, time_limit=3660
)
def dataset_import_execute(import_id: int) -> str | None:
    job = imports.dataset_import_execute(import_id=import_id)
    return job.status if job else None
