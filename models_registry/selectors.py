"""Reads of the registry: which models serve a line."""

import threading
import time
from dataclasses import dataclass

from django.conf import settings

from models_registry.models import Deployment


@dataclass(frozen=True)
class ServingModel:
    role: str
    model_version_id: int
    sha256: str
    artifact: str
    canary_percent: float


_cache: dict[int, tuple[float, dict[str, ServingModel]]] = {}
_cache_lock = threading.Lock()


def line_serving_models(*, line_id: int) -> dict[str, ServingModel]:
    """The models deployed on a line, by role (production / shadow / canary).

    Kept per process for SERVING_DEPLOYMENT_CACHE_SECONDS (default 2 s): one query less per
    capture; a rollout or rollback reaches every web process within that time.
    """
    ttl = settings.SERVING_DEPLOYMENT_CACHE_SECONDS
    now = time.monotonic()
    if ttl > 0:
        cached = _cache.get(line_id)
        if cached and cached[0] > now:
            return cached[1]
    rows = Deployment.objects.filter(line_id=line_id).values_list(
        "role",
        "model_version_id",
        "model_version__sha256",
        "model_version__artifact",
        "canary_percent",
    )
    models = {row[0]: ServingModel(*row) for row in rows}
    if ttl > 0:
        with _cache_lock:
            _cache[line_id] = (now + ttl, models)
    return models


def forget_line_serving_models(line_id: int | None = None) -> None:
    with _cache_lock:
        if line_id is None:
            _cache.clear()
        else:
            _cache.pop(line_id, None)
