"""Sending Celery tasks by their stable names, after the transaction commits.

Services enqueue work through here rather than importing their app's `tasks` module (which
imports the services: a cycle). A task is named once, in its `@shared_task(name=...)`, and
sent by that name; in eager mode (tests) it runs in place as usual.

When Redis is down or frozen a publish gives up within about 1 s (the broker's connect and
socket timeouts and publish retry policy, config/settings.py), so a request that committed
answers in time, and its work is reported lost instead of blocking the station.
"""

import logging
import time
from collections.abc import Callable
from typing import Any

from celery import current_app
from django.db import transaction
from kombu.exceptions import OperationalError

logger = logging.getLogger(__name__)


def task_send(name: str, *args: Any, task_id: str | None = None) -> None:
    """Send now. Raises what the broker raises when it cannot take the message."""
    options = {"task_id": task_id} if task_id else {}
    task = current_app.tasks.get(name)
    if task is None:
        # The apps' `tasks` modules load on first use (Celery's autodiscovery), so that a task
        # sent from a web process or a test runs with its own options (eager in tests).
        current_app.loader.import_default_modules()
        task = current_app.tasks.get(name)
    if task is None:
        current_app.send_task(name, args=list(args), **options)
    else:
        task.apply_async(args=list(args), **options)


def task_send_on_commit(
    name: str,
    *args: Any,
    task_id: str | None = None,
    on_failure: Callable[[Exception], None] | None = None,
) -> None:
    """Send once the current transaction commits; what was committed stays committed.

    When the broker cannot take the message, the failure is logged and `on_failure` (if any)
    runs, e.g. to mark a job as failed: a committed request never turns into an error.
    """

    def send() -> None:
        started = time.monotonic()
        try:
            task_send(name, *args, task_id=task_id)
        except Exception as exc:  # whatever the broker raised: the committed rows are safe
            waited = time.monotonic() - started
            if isinstance(exc, OperationalError | OSError):  # the broker is down or frozen
                logger.warning(
                    "could not queue %s%s (gave up after %.1f s): %s", name, args, waited, exc
                )
            else:
                logger.exception("could not queue %s%s", name, args)
            if on_failure is not None:
                on_failure(exc)

    transaction.on_commit(send)
