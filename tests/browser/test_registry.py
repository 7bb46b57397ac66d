"""The model registry in a real Chromium: a supervisor starts a training run, watches its
progress bar, opens the evaluation, puts the candidate in shadow, then canary, then rolls back.
A live uvicorn and a real Celery worker share a Redis queue of their own."""

import time
import uuid

import pytest

from models_registry import services as registry_services
from models_registry.models import Deployment, RolloutEvent, TrainingRun
from tests.browser.conftest import login
from tests.factories import ProductionLineFactory, UserFactory
from tests.integration.conftest import child_env, free_port, start, stop, wait_for_port

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def registry_server(postgres, redis_url, tmp_path):
    """uvicorn and a worker (default and training work on one test queue), gate margin wide:
    the candidate trains for two steps and its metrics are noise."""
    queue = f"test-registry-{uuid.uuid4().hex[:8]}"
    env = child_env(
        REDIS_URL=redis_url, CHANNELS_PREFIX=queue, CELERY_DEFAULT_QUEUE=queue,
        CELERY_TRAINING_QUEUE=queue, REGISTRY_GATE_MARGIN="1", JOB_HEARTBEAT_SECONDS="1",
        TRAINING_THREADS="1",
    )  # fmt: skip
    port = free_port()
    web_log, worker_log = tmp_path / "uvicorn.log", tmp_path / "worker.log"
    web = start(
        ["uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port)],
        env,
        web_log,
    )
    worker = start(
        ["celery", "-A", "config", "worker", "-Q", queue, "--pool", "solo",
         "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        env,
        worker_log,
    )  # fmt: skip
    try:
        wait_for_port(port, web, web_log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(worker)
        stop(web)


def test_supervisor_trains_evaluates_shadows_canaries_and_rolls_back(
    chromium, registry_server, model_artifact, screenshot
):
    line = ProductionLineFactory(code="L1", name="Assembly 1")
    production = registry_services.model_version_register(path=model_artifact, name="scratchnet")
    registry_services.rollout_promote(line=line, model_version=production, user=None)
    UserFactory(username="sup", roles=["supervisor"])
    page = login(chromium, registry_server, "sup")

    # Start a short run on 16 synthetic phones, evaluated on a small synthetic benchmark.
    page.goto("/models/")
    page.select_option("select[name=data_source]", "synthetic")
    page.fill("input[name=synthetic_count]", "16")
    page.select_option("select[name=preset]", "smoke")
    page.select_option("select[name=line]", "L1")
    screenshot(page, "registry-index-before", full_page=True)
    page.click("text=Start training")
    page.wait_for_url("**/models/runs/*/")

    # The progress bar moves until the run succeeds.
    seen = set()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        seen.add(page.eval_on_selector("#run-progress", "bar => bar.value"))
        if page.text_content('#run [data-role="status"]') == "succeeded":
            break
        time.sleep(0.2)
    seen.add(page.eval_on_selector("#run-progress", "bar => bar.value"))
    run = TrainingRun.objects.get()
    assert run.status == "succeeded", run.log
    assert 100 in seen and len(seen) >= 2, seen
    assert page.locator("[data-role=history] tr").count() >= 1
    screenshot(page, "registry-run", full_page=True)

    # The evaluation, beside production on the same benchmark.
    page.click("text=The new model: evaluation and rollout")
    page.wait_for_url(f"**/models/{run.model_version_id}/")
    deadline = time.monotonic() + 90
    while page.locator("text=Confusion matrix: scratchnet v1").count() == 0:
        assert time.monotonic() < deadline, "the evaluation did not finish"
        time.sleep(1)
        page.reload()
    assert page.locator("table.compare").is_visible()
    assert page.locator("table.slice").count() == 4
    screenshot(page, "registry-evaluation", full_page=True)

    # Shadow, then canary at 5%, then roll the canary back.
    panel = page.locator("section.rollout[data-line=L1]")
    panel.locator("text=Run in shadow").click()
    page.wait_for_selector("section.rollout[data-line=L1] [data-role=line-role]:has-text('shadow')")
    panel.locator("text=Start canary").click()
    page.wait_for_selector(
        "section.rollout[data-line=L1] [data-role=line-role]:has-text('canary 5%')"
    )
    assert Deployment.objects.get(line=line, role="canary").model_version_id == run.model_version_id
    screenshot(page, "registry-canary", full_page=True)
    panel.locator("text=Roll back canary").click()
    page.wait_for_selector("#events tr[data-action=canary_rollback]")
    assert set(Deployment.objects.filter(line=line).values_list("role", flat=True)) == {
        "production"
    }
    actions = list(RolloutEvent.objects.filter(line=line).values_list("action", flat=True))
    assert actions[:3] == ["canary_rollback", "canary_start", "shadow_start"]
    screenshot(page, "registry-rolled-back", full_page=True)
