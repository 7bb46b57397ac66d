"""/healthz and /readyz (shared/INTERFACES.md, Operations): no login, JSON, 200 or 503."""

import socket
import threading
import uuid

import httpx
import pytest
from django.db import OperationalError
from django.test import Client

from config import health
from models_registry import serving
from tests.factories import DeploymentFactory
from tests.integration.conftest import child_env, free_port, start, stop, wait_for_port


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


@pytest.fixture
def ready_process(settings):
    settings.REDIS_URL = ""
    yield
    health.warming_join(timeout=10)


def test_healthz_answers_without_login_or_database():
    # No django_db mark: a database query here would fail the test.
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_readyz_is_200_when_database_is_up_and_no_model_is_deployed(ready_process):
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["models"] == {"ok": True, "deployed": 0, "loaded": 0}
    assert "redis" not in body["checks"]  # REDIS_URL unset: the embedded broker


@pytest.mark.django_db
def test_readyz_is_503_with_retry_after_when_the_database_is_down(ready_process, monkeypatch):
    def refuse(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(health, "_database_select_one", refuse)
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response["Retry-After"] == str(health.RETRY_AFTER_SECONDS)
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["database"] == {
        "ok": False,
        "error": "OperationalError: connection refused",
    }
    assert body["checks"]["models"]["ok"] is False


@pytest.mark.django_db
def test_readyz_gives_up_on_a_database_that_does_not_answer(ready_process, monkeypatch, settings):
    settings.HEALTH_CHECK_TIMEOUT_SECONDS = 0.2
    release = threading.Event()
    monkeypatch.setattr(health, "_database_select_one", lambda: release.wait(5) and 0.0)
    try:
        response = Client().get("/readyz")
    finally:
        release.set()
    assert response.status_code == 503
    assert "no answer within 0.2 s" in response.json()["checks"]["database"]["error"]


@pytest.mark.django_db
def test_readyz_is_503_when_redis_is_configured_but_down(ready_process, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    settings.HEALTH_CHECK_TIMEOUT_SECONDS = 0.5
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response["Retry-After"]
    checks = response.json()["checks"]
    assert checks["database"]["ok"] is True
    assert checks["redis"]["ok"] is False
    assert "ConnectionError" in checks["redis"]["error"]


@pytest.mark.django_db
def test_readyz_waits_for_the_deployed_models_to_load(ready_process, fake_models):
    deployment = DeploymentFactory(role="production")
    sha = deployment.model_version.sha256

    first = Client().get("/readyz")
    assert first.status_code == 503  # nothing loaded in this process yet: it starts loading
    assert first.json()["checks"]["models"]["loading"] == [sha[:12]]

    health.warming_join(timeout=10)
    assert sha in fake_models.predictors
    again = Client().get("/readyz")
    assert again.status_code == 200, again.content
    assert again.json()["checks"]["models"] == {"ok": True, "deployed": 1, "loaded": 1}


@pytest.mark.django_db
def test_readyz_reports_a_model_that_cannot_be_loaded(ready_process, fake_models):
    deployment = DeploymentFactory(role="production")
    fake_models.break_model(deployment.model_version)
    assert not serving.warm(
        sha256=deployment.model_version.sha256, artifact=deployment.model_version.artifact
    )
    response = Client().get("/readyz")
    assert response.status_code == 503
    failed = response.json()["checks"]["models"]["failed"]
    assert "corrupt zip" in failed[deployment.model_version.sha256[:12]]


@pytest.mark.django_db
def test_probes_are_not_redirected_to_https(ready_process, settings):
    settings.SECURE_SSL_REDIRECT = True  # what DEBUG=0 gives, without HTTPS=0
    assert Client().get("/healthz").status_code == 200
    assert Client().get("/readyz").status_code == 200
    assert Client().get("/accounts/login/").status_code == 301  # pages are


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_production_configured_server_answers_probes_and_scrapes(postgres, redis_url, tmp_path):
    """uvicorn with DEBUG=0 and HTTPS=0 on PostgreSQL and Redis: probes, the protected scrape
    and the security headers, as a deployment's load balancer and Prometheus see them."""
    port = free_port()
    log = tmp_path / "web.log"
    env = child_env(
        REDIS_URL=redis_url,
        DEBUG="0",
        HTTPS="0",
        SECRET_KEY="s" * 50,
        METRICS_TOKEN="scrape-me",
        CHANNELS_PREFIX=f"test-{uuid.uuid4().hex[:8]}",
    )
    process = start(["uvicorn", "config.asgi:application", "--port", str(port)], env, log)
    try:
        wait_for_port(port, process, log)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            assert client.get("/healthz").json() == {"status": "ok"}
            ready = client.get("/readyz")
            assert ready.status_code == 200, ready.text
            checks = ready.json()["checks"]
            assert checks["database"]["ok"] and checks["redis"]["ok"], checks
            assert client.get("/metrics").status_code == 401
            scraped = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
            assert scraped.status_code == 200
            assert "inspection_metrics_database_up 1.0" in scraped.text
            page = client.get("/accounts/login/")
            assert page.status_code == 200  # HTTPS=0: no redirect
            assert "script-src 'self'" in page.headers["Content-Security-Policy"]
            assert page.headers["X-Frame-Options"] == "DENY"
            assert len(page.headers["X-Request-ID"]) == 32
    finally:
        stop(process)


def test_probes_answer_head_and_refuse_writes():
    assert Client().head("/healthz").status_code == 200
    assert Client().post("/healthz").status_code == 405
