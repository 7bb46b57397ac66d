"""A worker process killed mid-task (prefork, the pool process SIGKILLed during training): the
message is handed back (task_reject_on_worker_lost) and delivered again, the job's status
guard makes the second delivery a no-op (the run is not started twice), and the reaper turns
the silent run into `failed: worker lost`. (tests/models_registry/test_worker.py kills a solo
worker outright.)"""

import os
import re
import signal
import time
import uuid

import pytest

from models_registry import services
from models_registry.models import JobStatus
from models_registry.tasks import training_run_execute
from tests.integration.conftest import child_env, start, stop
from tests.integration.fault_services import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
LONG = {"image_size": [128, 72], "batch_size": 4, "crop": 64, "max_steps": 5000,
        "steps_per_epoch": 5000, "minutes": 10}  # fmt: skip


def test_a_pool_process_killed_mid_run_is_redelivered_and_not_run_twice(
    postgres, redis_url, tmp_path, django_capture_on_commit_callbacks
):
    queue = f"test-faults-{uuid.uuid4().hex[:8]}"  # other test runs may share this Redis
    log = tmp_path / "worker.log"
    worker = start(
        ["celery", "-A", "config", "worker", "-Q", queue, "--pool", "prefork", "--concurrency",
         "1", "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        child_env(REDIS_URL=redis_url, JOB_HEARTBEAT_SECONDS="1", CELERY_DEFAULT_QUEUE=queue,
                  CELERY_TRAINING_QUEUE=queue),
        log,
    )  # fmt: skip
    try:
        with django_capture_on_commit_callbacks(execute=False):  # sent below, to our queue
            run = services.training_run_start(
                user=None, data_source="synthetic", synthetic_count=16, config=LONG
            )
        training_run_execute.apply_async(args=[run.pk], queue=queue, task_id=run.celery_task_id)

        def running():
            run.refresh_from_db()
            return run.status == JobStatus.RUNNING and run.step >= 2

        wait_until(lambda: running() or worker.poll() is not None, 120, "the run did not start")
        assert running(), log.read_text()[-3000:]
        claimed_by, step = run.worker_id, run.step
        pool_pid = int(re.search(r"pid (\d+)", claimed_by).group(1))
        assert pool_pid != worker.pid  # the pool process, not the worker's main process
        os.kill(pool_pid, signal.SIGKILL)

        # The main process hands the message back; a new pool process gets it again and,
        # finding the run already running, leaves it alone.
        received = f"Task models_registry.training_run_execute[{run.celery_task_id}] received"
        wait_until(
            lambda: log.read_text().count(received) >= 2 and "succeeded" in log.read_text(),
            60,
            f"the task was not delivered again:\n{log.read_text()[-3000:]}",
        )
        assert "WorkerLostError" in log.read_text()
        assert worker.poll() is None  # the worker itself lives on
        run.refresh_from_db()
        assert (run.status, run.worker_id) == (JobStatus.RUNNING, claimed_by)
        assert run.log.count("started on") == 1 and run.step >= step

        time.sleep(3)  # heartbeats were every second: now at least 3 s old
        assert [job.pk for job in services.jobs_reap(stale_seconds=2.5)] == [run.pk]
        run.refresh_from_db()
        assert run.status == JobStatus.FAILED and run.error.startswith("worker lost")
    finally:
        stop(worker)
