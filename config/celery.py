"""The Celery app: `celery -A config worker -Q default,training`."""

import logging.config
import os
from pathlib import Path

from celery import Celery
from celery.signals import (
    beat_init,
    before_task_publish,
    setup_logging,
    task_postrun,
    task_prerun,
    worker_init,
)

from core.request_id import TASK_HEADER, request_id_get, request_id_reset, request_id_set

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _make_broker_folders(sender: Celery, **kwargs) -> None:
    # The embedded filesystem broker needs its folders before the first message.
    options = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)


# The request id travels with the tasks a request sends (in the message headers) and is the
# id of every log line the worker writes while running one (core/request_id.py).
@before_task_publish.connect
def _publish_request_id(headers: dict | None = None, **kwargs) -> None:
    request_id = request_id_get()
    if request_id and headers is not None:
        headers.setdefault(TASK_HEADER, request_id)


@task_prerun.connect
def _restore_request_id(task=None, **kwargs) -> None:
    request = getattr(task, "request", None)
    request_id = getattr(request, TASK_HEADER, None) or (
        getattr(request, "headers", None) or {}
    ).get(TASK_HEADER)
    if request_id:
        # Eager tasks (tests) run inside the request: keep its id to restore afterwards.
        request.request_id_token = request_id_set(request_id)


@task_postrun.connect
def _forget_request_id(task=None, **kwargs) -> None:
    token = getattr(getattr(task, "request", None), "request_id_token", None)
    if token is not None:
        request_id_reset(token)


@setup_logging.connect
def _django_logging(**kwargs) -> None:
    # Connected, so Celery leaves the root logger alone: the worker logs through LOGGING
    # (config/settings.py, applied by django.setup()), in the same format as the web.
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


@worker_init.connect
@beat_init.connect
def _refuse_to_start_misconfigured(**kwargs) -> None:
    # As the web server does (config/asgi.py): with DEBUG off and no SECRET_KEY, a worker or beat
    # does not start. Celery logs and swallows what a signal handler raises, hence SystemExit.
    from django.core.exceptions import ImproperlyConfigured

    from config.settings import check_production_settings

    try:
        check_production_settings()
    except ImproperlyConfigured as exc:
        raise SystemExit(f"ImproperlyConfigured: {exc}") from exc
