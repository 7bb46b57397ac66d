"""Loaded predictors, once per process per model version, reused across requests.

A broken artifact never takes the API down: `predictor_for` raises `ServingError`, the caller
routes the capture to a human, and the error is remembered (for `serving_errors()` and the
line's status) and retried only after SERVING_ERROR_RETRY_SECONDS.

At most SERVING_MAX_CONCURRENT images are in inference at once per process (each one costs
memory in proportion to its pixels); a capture that waits longer than
SERVING_QUEUE_TIMEOUT_SECONDS for a slot is answered 503 with Retry-After, nothing stored.
"""

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from core import blobs
from core.errors import ApplicationError
from models_registry.models import Deployment

logger = logging.getLogger(__name__)


class ServingError(Exception):
    """The model could not be loaded or could not predict."""


@dataclass(frozen=True)
class _Failure:
    message: str
    at: float


_predictors: dict[str, Any] = {}
_failures: dict[str, _Failure] = {}
_lock = threading.Lock()
# Inference slots: made on first use with the size the settings say (never at import time).
_slots: threading.BoundedSemaphore | None = None
_slots_size = 0
_slots_lock = threading.Lock()
# What a station is told when every slot stayed busy: try again in this many seconds.
BUSY_RETRY_AFTER_SECONDS = 2


def artifact_path(artifact: str, sha256: str | None = None) -> Path:
    """The artifact on this machine's disk (fetched once from object storage and checked
    against its sha256 there)."""
    return blobs.blob_local_path(artifact, store=blobs.MODELS, sha256=sha256)


def _load(path: Path, sha256: str) -> Any:
    from vision.inference import Predictor  # torch is imported only when a model is served

    return Predictor.from_artifact(
        path,
        threads=settings.SERVING_THREADS,
        expected_sha256=sha256,
        device=settings.SERVING_DEVICE,
    )


def predictor_for(*, sha256: str, artifact: str) -> Any:
    """The predictor of a model version, loading it on first use in this process."""
    predictor = _predictors.get(sha256)
    if predictor is not None:
        return predictor
    with _lock:
        predictor = _predictors.get(sha256)
        if predictor is not None:
            return predictor
        failure = _failures.get(sha256)
        if failure and time.monotonic() - failure.at < settings.SERVING_ERROR_RETRY_SECONDS:
            raise ServingError(failure.message)
        try:
            predictor = _load(artifact_path(artifact, sha256), sha256)
        except Exception as exc:  # any load failure: corrupt file, missing file, foreign format
            message = f"model {sha256[:12]} could not be loaded from {artifact}: {exc}"
            logger.error(message)
            _failures[sha256] = _Failure(message, time.monotonic())
            raise ServingError(message) from exc
        _failures.pop(sha256, None)
        _predictors[sha256] = predictor
        logger.info("loaded model %s from %s", sha256[:12], artifact)
        return predictor


def _inference_slots() -> threading.BoundedSemaphore:
    global _slots, _slots_size
    size = max(1, settings.SERVING_MAX_CONCURRENT)
    with _slots_lock:
        if _slots is None or _slots_size != size:
            _slots, _slots_size = threading.BoundedSemaphore(size), size
        return _slots


def predict(*, sha256: str, artifact: str, image: Any) -> Any:
    """Run one image through a model version; ServingError when it cannot, ApplicationError
    (503, Retry-After) when every inference slot of this process stays busy too long."""
    predictor = predictor_for(sha256=sha256, artifact=artifact)
    slots = _inference_slots()
    if not slots.acquire(timeout=settings.SERVING_QUEUE_TIMEOUT_SECONDS):
        logger.warning(
            "inference busy: no slot free in %ss", settings.SERVING_QUEUE_TIMEOUT_SECONDS
        )
        raise ApplicationError(
            "The inspection server is busy; send the capture again in a few seconds.",
            code="busy",
            status=503,
            headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
        )
    try:
        [prediction] = predictor.predict([image])
    except Exception as exc:
        message = f"model {sha256[:12]} failed to predict: {exc}"
        logger.exception(message)
        raise ServingError(message) from exc
    finally:
        slots.release()
    return prediction


def serving_errors() -> dict[str, str]:
    """The load errors this process remembers, by model sha256."""
    return {sha: failure.message for sha, failure in _failures.items()}


def warm(*, sha256: str, artifact: str) -> bool:
    """Load a model ahead of the first capture; False (and logged) when it cannot be loaded."""
    try:
        predictor_for(sha256=sha256, artifact=artifact)
    except ServingError:
        return False
    return True


def clear() -> None:
    """Forget every loaded model and error (tests, or after deleting artifacts)."""
    with _lock:
        _predictors.clear()
        _failures.clear()


def warm_deployed_in_background() -> threading.Thread:
    """Load every deployed model in a background thread, so the first capture after a start
    does not wait a second or two for its model. Failures are logged and remembered."""

    def run() -> None:
        from django.db import connection

        try:
            rows = set(
                Deployment.objects.values_list("model_version__sha256", "model_version__artifact")
            )
            for sha256, artifact in rows:
                warm(sha256=sha256, artifact=artifact)
        except Exception:  # e.g. not migrated yet: serving loads on first use instead
            logger.warning("could not warm the deployed models", exc_info=True)
        finally:
            connection.close()

    thread = threading.Thread(target=run, name="serving-warm", daemon=True)
    thread.start()
    return thread
