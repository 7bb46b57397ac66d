"""Model outputs after the station's answer: a shadow model run offline on a stored capture,
and the heatmap an inspector asks for (computed once, then kept)."""

import logging
import time
from typing import Any

from django.db import transaction

from core import blobs
from core.errors import ApplicationError
from inspection.models import Capture, Prediction
from inspection.services.captures import image_decode
from labeling import services as labeling_services
from models_registry import selectors as registry_selectors
from models_registry import serving

logger = logging.getLogger(__name__)


def prediction_record_offline(*, capture_id: Any, role: str) -> Prediction | None:
    """Run a deployed model that does not act (shadow) on a stored capture. Idempotent.

    Not atomic as a whole: the model runs outside any transaction (SQLite would hold its write
    lock, and the web requests would wait, while a model loads or predicts).
    """
    existing = Prediction.objects.filter(capture_id=capture_id, role=role).first()
    if existing:
        return existing
    capture = Capture.objects.select_related("line").filter(pk=capture_id).first()
    if capture is None:
        return None
    model = registry_selectors.line_serving_models(line_id=capture.line_id).get(role)
    if model is None:
        return None
    image = image_decode(blobs.blob_read(capture.image))
    started = time.perf_counter()
    prediction = serving.predict(sha256=model.sha256, artifact=model.artifact, image=image)
    ms = (time.perf_counter() - started) * 1000
    with transaction.atomic():
        row, _ = Prediction.objects.get_or_create(
            capture=capture,
            role=role,
            defaults={
                "model_version_id": model.model_version_id,
                "score": float(prediction.score),
                "verdict": prediction.verdict,
                "regions": prediction.to_dict()["regions"],
                "embedding": prediction.embedding_list(),
                "latency_ms": round(ms, 3),
            },
        )
        if role == "shadow":
            # The shadow may read the phone after the human decided: a disagreement is a lesson.
            labeling_services.task_create_if_shadow_disagrees(capture=capture)
    return row


def capture_heatmap_png(*, capture: Capture) -> str:
    """The acting model's heatmap over the capture: the stored name of a PNG (computed once,
    then kept in the blob store).

    Heatmaps are not stored at capture time (the station's path stays short and most are never
    looked at); the first inspector to toggle it pays one inference, cached on disk by image
    and model, so every web process and every later view reads the file.
    """
    decision = capture.decision
    prediction = next(
        (p for p in capture.predictions.all() if p.pk == decision.acting_prediction_id), None
    )
    if prediction is None:
        raise ApplicationError(
            "This capture has no model output to show.", code="no_heatmap", status=404
        )
    model = prediction.model_version
    relative = f"heatmaps/{model.sha256[:2]}/{model.sha256[:16]}-{capture.image_sha256}.png"
    if blobs.blob_exists(relative):
        return relative
    try:
        image = image_decode(blobs.blob_read(capture.image))
        output = serving.predict(sha256=model.sha256, artifact=model.artifact, image=image)
        png = output.heatmap_png(image)
    except (OSError, ApplicationError, serving.ServingError, AttributeError) as exc:
        logger.warning("no heatmap for capture %s: %s", capture.pk, exc)
        raise ApplicationError(
            "The heatmap cannot be computed for this capture.", code="no_heatmap", status=404
        ) from exc
    return blobs.blob_write_at(relative, png)
