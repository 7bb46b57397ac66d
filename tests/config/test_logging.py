"""Structured logs with a request id: on the response, on every log line of the request, and
in the Celery tasks the request sends (their worker logs carry it too)."""

import io
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.http import JsonResponse
from django.test import AsyncClient, Client
from django.urls import path

from config.celery import app
from core.logs import JsonFormatter, RequestIdFilter
from core.queueing import task_send
from core.request_id import HEADER, TASK_HEADER, request_id_get, request_id_reset, request_id_set
from tests.integration.conftest import child_env, free_port, start, stop, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
logger = logging.getLogger("tests.config.requests")
seen_by_tasks: list[str | None] = []


# Bounded like every task of ours (tests/config/test_celery_limits.py reads them all).
@app.task(
    name="tests.config.log_request_id",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=5,
    time_limit=10,
)
def log_request_id() -> None:
    seen_by_tasks.append(request_id_get())
    logger.info("the task runs")


def view(request):
    logger.info("the view runs")
    task_send("tests.config.log_request_id")  # eager in unit tests: runs here
    return JsonResponse({"request_id": request_id_get()})


async def async_view(request):
    logger.info("the async view runs")
    return JsonResponse({"request_id": request_id_get()})


urlpatterns = [path("logs/", view), path("logs-async/", async_view)]


@pytest.fixture
def json_lines():
    """What the console handler would print, as parsed JSON objects."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)


def test_every_response_gets_a_new_request_id():
    first, second = Client().get("/healthz"), Client().get("/healthz")
    assert len(first[HEADER]) == 32 and int(first[HEADER], 16) >= 0
    assert first[HEADER] != second[HEADER]


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        ("station-7:0042", True),
        ("3f2a8c1e-1111-4222-8333-944455556666", True),
        ("two words", False),
        ("x" * 129, False),
        ('quote"s', False),
    ],
)
def test_a_sane_incoming_request_id_is_kept_and_anything_else_replaced(incoming, kept):
    answered = Client().get("/healthz", headers={HEADER: incoming})[HEADER]
    assert (answered == incoming) is kept
    if not kept:
        assert len(answered) == 32


@pytest.mark.urls(__name__)
def test_the_log_lines_of_a_request_and_of_its_tasks_carry_its_id(json_lines):
    seen_by_tasks.clear()
    response = Client().get("/logs/", headers={HEADER: "req-abc-1"})
    assert response[HEADER] == "req-abc-1"
    assert response.json() == {"request_id": "req-abc-1"}
    lines = json_lines()
    assert [(line["message"], line["request_id"]) for line in lines] == [
        ("the view runs", "req-abc-1"),
        ("the task runs", "req-abc-1"),
    ]
    assert seen_by_tasks == ["req-abc-1"]
    assert request_id_get() is None  # nothing leaks past the request
    assert {"time", "level", "logger"} <= set(lines[0])
    assert (lines[0]["level"], lines[0]["logger"]) == ("INFO", "tests.config.requests")


@pytest.mark.urls(__name__)
def test_async_views_keep_the_request_id(json_lines):
    response = async_to_sync(AsyncClient().get)("/logs-async/", headers={HEADER: "req-async"})
    assert response[HEADER] == "req-async"
    assert response.json() == {"request_id": "req-async"}
    assert [line["request_id"] for line in json_lines()] == ["req-async"]


def test_the_request_id_goes_into_the_headers_of_a_published_task():
    app.conf.task_always_eager = False  # the autouse fixture restores it
    token = request_id_set("req-published")
    try:
        with app.connection_for_write("memory://") as connection:
            log_request_id.apply_async(connection=connection, queue="request-id-test")
            message = connection.SimpleQueue("request-id-test").get(timeout=5)
    finally:
        request_id_reset(token)
    assert message.headers[TASK_HEADER] == "req-published"
    assert message.headers["task"] == "tests.config.log_request_id"


def test_a_task_published_outside_a_request_has_no_request_id():
    app.conf.task_always_eager = False
    with app.connection_for_write("memory://") as connection:
        log_request_id.apply_async(connection=connection, queue="request-id-test-2")
        message = connection.SimpleQueue("request-id-test-2").get(timeout=5)
    assert TASK_HEADER not in message.headers


def test_a_task_runs_with_the_id_it_was_sent_with_and_forgets_it_after(json_lines):
    seen_by_tasks.clear()
    log_request_id.apply(headers={TASK_HEADER: "req-from-web"})
    assert seen_by_tasks == ["req-from-web"]
    assert json_lines()[0]["request_id"] == "req-from-web"
    assert request_id_get() is None
    log_request_id.apply()  # a beat job: no request behind it
    assert seen_by_tasks[-1] is None
    assert json_lines()[-1]["request_id"] == "-"


def test_the_console_handler_filters_and_formats_as_json_with_debug_off():
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    console = next(h for h in handlers if any(isinstance(f, RequestIdFilter) for f in h.filters))
    assert isinstance(console.formatter, JsonFormatter)  # DEBUG is off in tests
    record = logging.LogRecord("x.y", logging.ERROR, __file__, 1, "disk %s", ("full",), None)
    console.filter(record)
    line = json.loads(console.format(record))
    assert line["message"] == "disk full" and line["request_id"] == "-"
    assert line["time"].endswith("+00:00")


def formatter_for(**env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "LOG_FORMAT")}
    code = (
        "from config import settings; print(settings.LOGGING['handlers']['console']['formatter'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**environment, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip() or result.stderr.strip().splitlines()[-1]


def test_log_format_is_json_with_debug_off_and_plain_with_debug_on_unless_chosen():
    assert formatter_for(DEBUG="0") == "json"
    assert formatter_for(DEBUG="1") == "plain"
    assert formatter_for(DEBUG="1", LOG_FORMAT="json") == "json"
    assert formatter_for(DEBUG="0", LOG_FORMAT="plain") == "plain"
    assert "LOG_FORMAT must be json or plain" in formatter_for(LOG_FORMAT="xml")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_capture_request_id_reaches_the_worker_logs(
    postgres, redis_url, model_artifact, tmp_path
):
    """Production logging on real processes: uvicorn and a Celery worker on Redis print JSON;
    the id a station sends comes back, and the worker's lines for the shadow model's task
    (sent by that request) carry it."""
    from inspection.models import Prediction
    from models_registry import services as registry_services
    from tests.factories import ProductionLineFactory, image_bytes, station_with_token

    line = ProductionLineFactory(code="L1", automation_level="assisted")
    shadow = registry_services.model_version_register(path=model_artifact)
    registry_services.deployment_set(line=line, model_version=shadow, role="shadow")
    station = station_with_token(line=line)
    queue = f"test-{uuid.uuid4().hex[:8]}"
    env = child_env(
        REDIS_URL=redis_url,
        DEBUG="0",
        HTTPS="0",
        SECRET_KEY="k" * 50,
        LOG_FORMAT="json",
        CELERY_DEFAULT_QUEUE=queue,
        CHANNELS_PREFIX=queue,
    )
    port = free_port()
    web_log, worker_log = tmp_path / "web.log", tmp_path / "worker.log"
    web = start(["uvicorn", "config.asgi:application", "--port", str(port)], env, web_log)
    worker = start(
        ["celery", "-A", "config", "worker", "-Q", queue, "--pool", "solo",
         "--without-gossip", "--without-mingle"],
        env,
        worker_log,
    )  # fmt: skip
    try:
        wait_for_port(port, web, web_log)
        request_id = f"station-test-{uuid.uuid4().hex[:8]}"
        response = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/captures",
            headers={"Authorization": f"Token {station.token}", HEADER: request_id},
            data={"line": "L1", "idempotency_key": "k-1"},
            files={"image": ("phone.jpg", image_bytes(), "image/jpeg")},
            timeout=60,
        )
        assert response.status_code == 201, response.text
        assert response.headers[HEADER] == request_id
        capture_id = response.json()["id"]
        deadline = time.monotonic() + 90
        while not Prediction.objects.filter(capture_id=capture_id, role="shadow").exists():
            assert worker.poll() is None, worker_log.read_text()[-3000:]
            assert time.monotonic() < deadline, worker_log.read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(1)  # the task's last line ("succeeded") follows the row
    finally:
        stop(worker)
        stop(web)
    worker_lines = [json.loads(x) for x in worker_log.read_text().splitlines() if x.startswith("{")]
    tagged = [x for x in worker_lines if x.get("request_id") == request_id]
    assert any("succeeded" in x["message"] for x in tagged), worker_lines[-10:]
    web_lines = [json.loads(x) for x in web_log.read_text().splitlines() if x.startswith("{")]
    assert any("Started server process" in x["message"] for x in web_lines)
    # uvicorn's access log, on by default, in the same JSON lines
    assert any("POST /api/v1/captures" in x["message"] for x in web_lines), web_lines[-5:]
