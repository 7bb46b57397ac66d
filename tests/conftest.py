"""Fixtures for the Django tests: isolated media/model folders, eager Celery for unit tests,
fake and real (tiny) models, and the switch that makes service-backed tests fail, not skip.

Integration tests (`@pytest.mark.integration`) need PostgreSQL, Redis, a Celery worker or an
ASGI server. Without REQUIRE_SERVICES=1 (or --require-services) they skip when a service is
missing; with it (CI) they fail.
"""

import os
import socket
from dataclasses import dataclass, field
from urllib.parse import urlparse

import pytest
from channels.layers import channel_layers
from django.core.cache import cache

from models_registry import serving


def pytest_addoption(parser):
    parser.addoption(
        "--require-services",
        action="store_true",
        default=False,
        help="fail (instead of skip) integration tests whose PostgreSQL/Redis is missing",
    )


def services_required(config) -> bool:
    return config.getoption("--require-services") or os.environ.get("REQUIRE_SERVICES") == "1"


@pytest.fixture(scope="session")
def require_service(request):
    """Call with (name, ok, why): skips locally, fails when services are required."""

    def check(name: str, ok: bool, why: str) -> None:
        if ok:
            return
        message = f"{name} is not available: {why}"
        if services_required(request.config):
            pytest.fail(message + " (REQUIRE_SERVICES=1)", pytrace=False)
        pytest.skip(message)

    return check


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or default_port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url(require_service) -> str:
    url = os.environ.get("REDIS_URL", "")
    require_service("Redis", bool(url) and _reachable(url, 6379), url or "REDIS_URL is not set")
    return url


@pytest.fixture
def postgres(require_service, settings) -> None:
    engine = settings.DATABASES["default"]["ENGINE"]
    require_service("PostgreSQL", "postgresql" in engine, "DATABASE_URL is not a PostgreSQL URL")


@pytest.fixture(autouse=True)
def _plain_http(settings):
    """The test client speaks plain HTTP: what HTTPS=0 gives a test rig (DEBUG is off here,
    so the settings assume HTTPS and would redirect every request to https://)."""
    settings.SECURE_SSL_REDIRECT = False
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    settings.SECURE_HSTS_SECONDS = 0


@pytest.fixture(autouse=True)
def _isolated_storage(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MODELS_ROOT = tmp_path / "artifacts"
    settings.BLOB_CACHE_ROOT = tmp_path / "blob-cache"
    # Tests change deployments between captures: read them every time.
    settings.SERVING_DEPLOYMENT_CACHE_SECONDS = 0
    settings.STATION_AUTH_CACHE_SECONDS = 0  # and lines and tokens
    serving.clear()
    yield
    serving.clear()


@pytest.fixture(autouse=True)
def _unit_test_plumbing(request, settings):
    """Unit tests get an in-memory channel layer and cache and eager Celery; integration tests
    the real. The cache starts empty: the throttles count per station and user id, and ids come
    again from test to test; so do the throttles' leases on its counts."""
    from core.throttling import leases

    leases.forget()
    if request.node.get_closest_marker("integration"):
        yield
        return
    from config.celery import app

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends = {}
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = eager
    channel_layers.backends = {}


@dataclass
class FakePrediction:
    score: float
    verdict: str
    regions: list = field(default_factory=list)

    embedding: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"score": self.score, "verdict": self.verdict, "regions": self.regions}

    def embedding_list(self, decimals: int = 4) -> list[float]:
        return [round(float(v), decimals) for v in self.embedding]


class FakePredictor:
    """Scores every image with a fixed number (set `.score`); counts its calls."""

    def __init__(self, sha256: str, score: float = 0.1):
        self.sha256 = sha256
        self.score = score
        self.calls = 0
        self.metadata = {}
        self.pass_threshold, self.fail_threshold = 0.3, 0.7

    def predict(self, images):
        self.calls += 1
        verdict = "fail" if self.score >= 0.7 else "pass" if self.score < 0.3 else "uncertain"
        region = {
            "box": [1, 2, 30, 40],
            "polygon": [],
            "score": self.score,
            "defect_type": "scratch",
        }
        return [FakePrediction(self.score, verdict, [region] if verdict != "pass" else [])]


@pytest.fixture
def fake_models(monkeypatch):
    """Replace artifact loading with FakePredictors: `fake_models[sha256].score = 0.9`."""
    predictors: dict[str, FakePredictor] = {}
    broken: set[str] = set()

    def load(path, sha256):
        if sha256 in broken:
            raise ValueError("not a model artifact (corrupt zip)")
        return predictors.setdefault(sha256, FakePredictor(sha256))

    monkeypatch.setattr(serving, "_load", load)

    class Models(dict):
        def set_score(self, model_version, score: float) -> None:
            predictors.setdefault(model_version.sha256, FakePredictor(model_version.sha256))
            predictors[model_version.sha256].score = score

        def break_model(self, model_version) -> None:
            broken.add(model_version.sha256)

    models = Models()
    models.predictors = predictors
    return models


@pytest.fixture(scope="session")
def model_artifact(tmp_path_factory):
    """A real vision artifact (untrained weights: loading and serving, not accuracy)."""
    import torch

    from vision.artifacts import save_artifact
    from vision.model import NORMALIZATION, build_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("artifact") / "tiny.pt"
    save_artifact(
        path,
        build_model(),
        {"thresholds": {"pass": 0.3, "fail": 0.7}, "normalization": NORMALIZATION},
    )
    return path
