"""What training runs, evaluations and batch predictions share: creating and queueing a row,
claiming a queued row,
progress and a heartbeat written to the row, finishing, and the reaper of dead workers' jobs.

Progress lives in the database row, not in Celery results: every web process reads it, and a
worker killed mid-run leaves a heartbeat that stops moving, which the reaper turns into
`failed: worker lost` (with the log kept) instead of a run stuck "running" forever.
"""

import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core.queueing import task_send_on_commit
from models_registry.models import BatchPrediction, Evaluation, JobStatus, TrainingRun

logger = logging.getLogger(__name__)

JOB_MODELS = (TrainingRun, Evaluation, BatchPrediction)


def job_create(model: type, *, task: str, user: Any = None, **fields: Any) -> Any:
    """Create a queued job row and send its Celery task (by name) once the row is committed.

    When the broker cannot take the message, the job is marked failed with the reason, never
    left `queued` forever.
    """
    job = model.objects.create(
        created_by=user if getattr(user, "pk", None) else None,
        celery_task_id=str(uuid.uuid4()),
        **fields,
    )

    def not_queued(exc: Exception) -> None:
        model.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
            status=JobStatus.FAILED,
            error=f"could not be queued: {type(exc).__name__}: {exc}"[:4000],
            finished_at=timezone.now(),
        )

    task_send_on_commit(task, job.pk, task_id=job.celery_task_id, on_failure=not_queued)
    return job


def worker_identity(hostname: str = "") -> str:
    return f"{hostname or socket.gethostname()} pid {os.getpid()}"


@transaction.atomic
def job_claim(model: type, pk: Any, *, worker_id: str) -> Any | None:
    """Move a queued job to running for this worker; None when it is not queued any more (a
    redelivered message, a cancelled run): tasks are idempotent."""
    job = model.objects.select_for_update().filter(pk=pk).first()
    if job is None or job.status != JobStatus.QUEUED:
        return None
    if getattr(job, "cancel_requested", False):
        job.status = JobStatus.CANCELLED
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "finished_at"])
        return None
    now = timezone.now()
    job.status = JobStatus.RUNNING
    job.started_at = now
    job.heartbeat_at = now
    job.worker_id = worker_id
    job.save(update_fields=["status", "started_at", "heartbeat_at", "worker_id"])
    return job


def job_finish(job: Any, status: str, *, error: str = "", log: str | None = None, **fields) -> bool:
    """Write the outcome, unless the reaper already gave the job up (then nothing changes)."""
    values = {"status": status, "finished_at": timezone.now(), "heartbeat_at": timezone.now()}
    if status == JobStatus.SUCCEEDED:
        values["progress"] = 1.0
    if error:
        values["error"] = error[:4000]
    if log is not None:
        values["log"] = log
    values.update(fields)
    updated = type(job).objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(**values)
    for name, value in values.items():
        setattr(job, name, value)
    return bool(updated)


class JobReporter:
    """Progress and log lines into the job's row, at most every `every` seconds (and at once
    when asked), a heartbeat thread, and a throttled read of the cancel flag."""

    def __init__(self, job: Any, *, every: float = 1.0) -> None:
        self.model = type(job)
        self.pk = job.pk
        self.every = every
        self.lines: list[str] = [job.log] if job.log else []
        self.fields: dict[str, Any] = {}
        self._last_flush = 0.0
        self._last_poll = 0.0
        self._stopping = False
        self._stop_heartbeat = threading.Event()
        self._heartbeat = threading.Thread(
            target=self._beat, name=f"heartbeat-{self.pk}", daemon=True
        )
        self._heartbeat.start()

    @property
    def log_text(self) -> str:
        return "\n".join(self.lines)

    def log(self, message: str) -> None:
        stamp = timezone.now().strftime("%H:%M:%S")
        self.lines.append(f"{stamp} {message}")
        logger.info("%s %s: %s", self.model.__name__, self.pk, message)

    def update(self, *, force: bool = False, **fields: Any) -> None:
        self.fields.update(fields)
        now = time.monotonic()
        if force or now - self._last_flush >= self.every:
            self._last_flush = now
            self.model.objects.filter(pk=self.pk, status=JobStatus.RUNNING).update(
                log=self.log_text, heartbeat_at=timezone.now(), **self.fields
            )

    def should_stop(self) -> bool:
        """True once a cancel was asked for, or the job is no longer running (reaped)."""
        now = time.monotonic()
        if not self._stopping and now - self._last_poll >= settings.JOB_CANCEL_POLL_SECONDS:
            self._last_poll = now
            fields = ["status"]
            if hasattr(self.model, "cancel_requested"):
                fields.append("cancel_requested")
            row = self.model.objects.filter(pk=self.pk).values(*fields).first()
            self._stopping = (
                row is None
                or row["status"] != JobStatus.RUNNING
                or bool(row.get("cancel_requested"))
            )
        return self._stopping

    def _beat(self) -> None:
        # The heartbeat runs beside the work, so one long step (loading a dataset) does not
        # look like a dead worker; a killed worker takes this thread with it.
        try:
            while not self._stop_heartbeat.wait(settings.JOB_HEARTBEAT_SECONDS):
                self.model.objects.filter(pk=self.pk, status=JobStatus.RUNNING).update(
                    heartbeat_at=timezone.now()
                )
        except Exception:  # the database went away: the reaper will decide
            logger.warning("heartbeat of %s %s stopped", self.model.__name__, self.pk)
        finally:
            connection.close()

    def close(self) -> None:
        self._stop_heartbeat.set()
        self._heartbeat.join(timeout=5)


def jobs_reap(*, now: datetime | None = None, stale_seconds: float | None = None) -> list[Any]:
    """Mark running jobs whose heartbeat stopped (the worker died) as failed, keeping their log."""
    now = now or timezone.now()
    stale = stale_seconds if stale_seconds is not None else settings.JOB_STALE_SECONDS
    cutoff = now - timedelta(seconds=stale)
    reaped = []
    for model in JOB_MODELS:
        for job in model.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=cutoff):
            message = (
                f"worker lost: no heartbeat from {job.worker_id or 'the worker'} since "
                f"{job.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC (more than {stale:g} s)"
            )
            updated = model.objects.filter(
                pk=job.pk, status=JobStatus.RUNNING, heartbeat_at__lt=cutoff
            ).update(
                status=JobStatus.FAILED,
                error=message,
                finished_at=now,
                log=(job.log + "\n" if job.log else "") + f"{now:%H:%M:%S} {message}",
            )
            if updated:
                logger.warning("%s %s: %s", model.__name__, job.pk, message)
                reaped.append(job)
    return reaped
