"""Batch re-scoring: the stored captures of a date range scored again with a chosen version
(nightly, or before a rollout) in a Celery worker, next to their final verdicts.

The registry starts the job (models_registry.services.batch); the scoring reads captures and
decisions, so it lives here, where both are visible.
"""

import traceback
from typing import Any

from core import blobs
from inspection.models import Capture, Decision
from inspection.services.captures import image_decode
from models_registry import serving
from models_registry.models import BatchPrediction, BatchPredictionResult, JobStatus
from models_registry.services.jobs import JobReporter, job_claim, job_finish, worker_identity


def batch_predict_execute(*, batch_id: int, hostname: str = "") -> BatchPrediction | None:
    """Score every capture of the range not scored yet by this batch (so a retry resumes)."""
    batch = job_claim(BatchPrediction, batch_id, worker_id=worker_identity(hostname))
    if batch is None:
        return None
    reporter = JobReporter(batch)
    try:
        captures = Capture.objects.filter(
            received_at__gte=batch.received_after, received_at__lt=batch.received_before
        )
        if batch.line_id:
            captures = captures.filter(line_id=batch.line_id)
        captures = captures.order_by("received_at").values_list("pk", "image")
        total = captures.count()
        done = set(batch.results.values_list("capture_id", flat=True))
        reporter.log(f"{total} captures to score with {batch.model_version}")
        reporter.update(force=True, total=total, done=len(done))
        version = batch.model_version
        for capture_id, image in captures.iterator():
            if capture_id in done:
                continue
            if reporter.should_stop():
                break
            prediction = serving.predict(
                sha256=version.sha256,
                artifact=version.artifact,
                image=image_decode(blobs.blob_read(image)),
            )
            BatchPredictionResult.objects.get_or_create(
                batch=batch,
                capture_id=capture_id,
                defaults={"score": float(prediction.score), "verdict": prediction.verdict},
            )
            done.add(capture_id)
            reporter.update(done=len(done), progress=len(done) / total if total else 1.0)
        summary = batch_prediction_summary(batch=batch)
        reporter.log(f"done: {summary}")
        reporter.close()
        job_finish(
            batch,
            JobStatus.SUCCEEDED,
            log=reporter.log_text,
            total=total,
            done=len(done),
            summary=summary,
        )
    except Exception as exc:
        reporter.log(traceback.format_exc())
        reporter.close()
        job_finish(
            batch, JobStatus.FAILED, error=f"{type(exc).__name__}: {exc}", log=reporter.log_text
        )
    finally:
        reporter.close()
    batch.refresh_from_db()
    return batch


def batch_prediction_summary(*, batch: BatchPrediction) -> dict[str, Any]:
    """Verdict counts, and agreement with the captures' final verdicts where one was given."""
    results = list(batch.results.values_list("capture_id", "verdict"))
    finals = dict(
        Decision.objects.filter(
            capture_id__in=[c for c, _ in results], status="decided"
        ).values_list("capture_id", "verdict")
    )
    counts: dict[str, int] = {}
    for _, verdict in results:
        counts[verdict] = counts.get(verdict, 0) + 1
    compared = [(v, finals[c]) for c, v in results if c in finals and v in ("pass", "fail")]
    agreeing = sum(1 for mine, final in compared if mine == final)
    return {
        "scored": len(results),
        "verdicts": counts,
        "compared_with_final": len(compared),
        "agreement_percent": round(100 * agreeing / len(compared), 1) if compared else None,
    }
