"""Every Celery task is bounded in time and survives its worker dying: a soft and a hard time
limit, acknowledged late and handed back when the worker is lost, and a Redis visibility
timeout longer than any task may run (else a long task would be delivered twice)."""

import runpy
from pathlib import Path

import pytest

from config.celery import app

SETTINGS = Path(__file__).resolve().parents[2] / "config" / "settings.py"


def our_tasks() -> dict:
    app.loader.import_default_modules()
    tasks = {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}
    assert tasks, "no task registered"
    return tasks


@pytest.mark.parametrize("name", sorted(our_tasks()))
def test_every_task_has_time_limits_and_is_redelivered_when_its_worker_dies(name):
    task = app.tasks[name]
    assert task.soft_time_limit and task.time_limit, f"{name} runs without a time limit"
    # The soft limit comes first, so the task can record why it stopped.
    assert 0 < task.soft_time_limit < task.time_limit
    assert task.acks_late and task.reject_on_worker_lost


def test_short_tasks_have_short_limits():
    tasks = our_tasks()
    assert tasks["inspection.capture_predict_offline"].time_limit <= 60
    assert tasks["monitoring.webhook_deliver"].time_limit <= 30
    for beat in (
        "monitoring.lines_check",
        "models_registry.canary_check",
        "models_registry.jobs_reap",
    ):
        assert tasks[beat].time_limit <= 60  # they run every minute
    assert tasks["models_registry.training_run_execute"].time_limit >= 3600  # training: hours


def test_the_redis_visibility_timeout_outlasts_every_task(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    redis_settings = runpy.run_path(str(SETTINGS))
    options = redis_settings["CELERY_BROKER_TRANSPORT_OPTIONS"]
    longest = max(task.time_limit for task in our_tasks().values())
    assert options["visibility_timeout"] > longest
    # A publish to a dead or frozen Redis gives up quickly (connect and reply timeouts).
    assert options["socket_connect_timeout"] <= 2 and options["socket_timeout"] <= 2
    assert redis_settings["CELERY_TASK_PUBLISH_RETRY_POLICY"]["max_retries"] == 0


def test_a_longer_training_limit_moves_the_visibility_timeout(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("TRAINING_SOFT_TIME_LIMIT", str(10 * 3600))
    redis_settings = runpy.run_path(str(SETTINGS))
    hard = redis_settings["CELERY_TASK_ANNOTATIONS"]["models_registry.training_run_execute"]
    assert (
        redis_settings["CELERY_BROKER_TRANSPORT_OPTIONS"]["visibility_timeout"]
        > hard["time_limit"]
        > 10 * 3600
    )
