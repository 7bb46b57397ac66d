"""Training in a real Celery worker process on Redis: a tiny model trains for two steps, a
cancel really stops a running run, and a worker killed mid-run (SIGKILL) leaves the run
failed "worker lost" with its log, not stuck running."""

import os
import signal
import time
import uuid

import pytest

from models_registry import services
from models_registry.models import JobStatus, ModelStatus, TrainingRun
from models_registry.tasks import training_run_execute
from tests.factories import ProductionLineFactory
from tests.integration.conftest import child_env, start, stop

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
TINY = {"image_size": [128, 72], "steps_per_epoch": 2, "batch_size": 4, "crop": 64}
LONG = {**TINY, "max_steps": 5000, "steps_per_epoch": 5000, "minutes": 10}


@pytest.fixture
def worker(postgres, redis_url, tmp_path):
    """A worker on a queue of its own (other test runs may share this Redis), beating every
    second."""
    queue = f"test-training-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"
    process = start(
        ["celery", "-A", "config", "worker", "-Q", queue, "--pool", "solo", "--concurrency", "1",
         "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        child_env(REDIS_URL=redis_url, JOB_HEARTBEAT_SECONDS="1", JOB_CANCEL_POLL_SECONDS="0.2",
                  CELERY_DEFAULT_QUEUE=queue, CELERY_TRAINING_QUEUE=queue),
        log,
    )  # fmt: skip
    process.queue, process.log = queue, log
    yield process
    stop(process)


def queue_run(worker, django_capture_on_commit_callbacks, **fields) -> TrainingRun:
    with django_capture_on_commit_callbacks(execute=False):  # sent below, to the test's queue
        run = services.training_run_start(user=None, data_source="synthetic", **fields)
    training_run_execute.apply_async(args=[run.pk], queue=worker.queue)
    return run


def wait_for(worker, run, predicate, what: str, timeout: float = 120) -> TrainingRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if predicate(run):
            return run
        if worker.poll() is not None and not predicate(run):
            break
        time.sleep(0.3)
    pytest.fail(f"{what}: run is {run.status} at step {run.step}\n{worker.log.read_text()[-3000:]}")


def test_worker_trains_a_tiny_model_and_a_cancel_stops_a_running_one(
    worker, django_capture_on_commit_callbacks
):
    run = queue_run(
        worker, django_capture_on_commit_callbacks, synthetic_count=16,
        config={**TINY, "max_steps": 2},
    )  # fmt: skip
    run = wait_for(worker, run, lambda r: r.finished, "the tiny run did not finish")
    assert run.status == JobStatus.SUCCEEDED, run.log
    assert run.step == 2 and run.progress == 1.0 and run.history
    assert run.model_version.status == ModelStatus.CANDIDATE
    assert "pid" in run.worker_id

    long_run = queue_run(
        worker, django_capture_on_commit_callbacks, synthetic_count=16, config=LONG
    )
    long_run = wait_for(worker, long_run, lambda r: r.step >= 3, "the long run did not start")
    asked = time.monotonic()
    services.training_run_cancel(run=long_run, user=None)
    long_run = wait_for(worker, long_run, lambda r: r.finished, "the cancel was not obeyed", 30)
    assert long_run.status == JobStatus.CANCELLED
    assert time.monotonic() - asked < 15
    assert long_run.step < 5000 and long_run.model_version is None
    assert "cancelled" in long_run.log


def test_a_killed_worker_leaves_the_run_failed_with_its_log(
    worker, django_capture_on_commit_callbacks
):
    ProductionLineFactory(code="L1")
    run = queue_run(worker, django_capture_on_commit_callbacks, synthetic_count=16, config=LONG)
    run = wait_for(worker, run, lambda r: r.step >= 2, "the run did not start")
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    time.sleep(3)  # heartbeats were every second: now at least 3 s old
    run.refresh_from_db()
    assert run.status == JobStatus.RUNNING  # nobody told the database yet
    reaped = services.jobs_reap(stale_seconds=2.5)
    assert [job.pk for job in reaped] == [run.pk]
    run.refresh_from_db()
    assert run.status == JobStatus.FAILED
    assert run.error.startswith("worker lost") and run.worker_id in run.error
    assert "started on" in run.log and "worker lost" in run.log
    assert run.finished_at is not None
