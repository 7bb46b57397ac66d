"""Redis frozen, then killed, then back, under a line with a production and a shadow model.

The test runs its own redis-server (never the shared one), a uvicorn and a Celery worker on
it. While Redis cannot answer, captures still get the production model's verdict at once
(201, never a 5xx) and are stored; the shadow task's publish gives up within about 2 s; a
training run that cannot be queued is marked failed with the reason. When Redis is back, the
inspectors' websocket events and the shadow predictions resume.
"""

import json
import re
import time
import uuid

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from inspection.models import Capture, Prediction
from models_registry import services as registry_services
from models_registry.models import JobStatus, TrainingRun
from tests.factories import ProductionLineFactory, UserFactory, image_bytes, station_with_token
from tests.integration.conftest import child_env, start, stop
from tests.integration.fault_services import OwnRedis, WebProcess, login, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
# A capture takes well under a second; a publish to a dead or frozen Redis gives up in ~1 s.
GIVE_UP_SECONDS = 2.5


@pytest.fixture
def redis(tmp_path):
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.close()


def second_artifact(folder):
    import torch

    from vision.artifacts import save_artifact
    from vision.model import NORMALIZATION, build_model

    torch.manual_seed(1)
    path = folder / "shadow.pt"
    meta = {"thresholds": {"pass": 0.3, "fail": 0.7}, "normalization": NORMALIZATION}
    save_artifact(path, build_model(), meta)
    return path


class Station:
    def __init__(self, base: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=base, headers={"Authorization": f"Token {token}"}, timeout=30
        )
        self.answers: list[tuple[int, dict, float]] = []

    def post(self, key: str, seed: int) -> tuple[int, dict, float]:
        started = time.monotonic()
        response = self.http.post(
            "/api/v1/captures",
            data={"line": "L1", "idempotency_key": key},
            files={"image": ("p.jpg", image_bytes(seed=seed), "image/jpeg")},
        )
        answer = (response.status_code, response.json(), time.monotonic() - started)
        self.answers.append(answer)
        return answer


def line_feed(base: str, browser: httpx.Client):
    socket = ws_connect(
        f"{base.replace('http://', 'ws://')}/ws/lines/L1/",
        additional_headers={
            "Cookie": f"sessionid={browser.cookies['sessionid']}",
            "Origin": base,
        },
        open_timeout=10,
        legacy=True,  # opened here, closed by the test
    )
    assert json.loads(socket.recv(timeout=10))["type"] == "hello"
    return socket


def next_capture_event(socket, capture_id: str, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        event = json.loads(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
        if event.get("type") == "capture" and event["capture"]["id"] == capture_id:
            return event


def shadow_of(capture_id: str) -> bool:
    return Prediction.objects.filter(capture_id=capture_id, role="shadow").exists()


def test_redis_frozen_then_killed_then_back(redis, model_artifact, tmp_path):
    line = ProductionLineFactory(code="L1", automation_level="full", audit_percent=0)
    production = registry_services.model_version_register(path=model_artifact)
    registry_services.deployment_set(line=line, model_version=production, role="production")
    shadow = registry_services.model_version_register(path=second_artifact(tmp_path))
    registry_services.deployment_set(line=line, model_version=shadow, role="shadow")
    station_row = station_with_token(line=line, name="S1")
    UserFactory(username="ines", roles=["inspector"], lines=[line])
    UserFactory(username="sam", roles=["supervisor"])

    env = child_env(REDIS_URL=redis.url, CHANNELS_PREFIX=f"test-{uuid.uuid4().hex[:8]}")
    web = WebProcess(env, tmp_path / "uvicorn.log")
    worker_log = tmp_path / "worker.log"
    worker = start(
        ["celery", "-A", "config", "worker", "-Q", "default", "--pool", "solo",
         "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        env,
        worker_log,
    )  # fmt: skip
    station = inspector = supervisor = feed = None
    try:
        web.start()
        station = Station(web.url, station_row.token)
        inspector = login(web.url, "ines")
        supervisor = login(web.url, "sam")
        feed = line_feed(web.url, inspector)

        # Redis up: the model decides, the inspectors see it, the worker runs the shadow.
        status, first, up_seconds = station.post("up-0", seed=0)
        assert status == 201 and first["decided_by"] == "model", first
        next_capture_event(feed, first["id"])
        wait_until(
            lambda: shadow_of(first["id"]) or worker.poll() is not None,
            90,
            "no shadow prediction with Redis up",
        )
        assert shadow_of(first["id"]), worker_log.read_text()[-3000:]

        # Frozen (accepts connections, never answers): the publish must not hang the station.
        redis.freeze()
        status, frozen, frozen_seconds = station.post("frozen-1", seed=1)
        assert status == 201 and frozen["decided_by"] == "model", frozen
        assert frozen_seconds < GIVE_UP_SECONDS, frozen_seconds
        redis.thaw()

        # Killed: verdicts keep coming from the model, stored, answered 201 in time.
        redis.kill()
        down = [station.post(f"down-{n}", seed=10 + n) for n in range(3)]
        for status, body, seconds in down:
            assert status == 201, body
            assert (body["status"], body["decided_by"]) == ("decided", "model")
            assert body["verdict"] in ("pass", "fail")
            assert seconds < GIVE_UP_SECONDS, seconds
        # A job that cannot be queued is failed with the reason, not left queued forever.
        started = supervisor.post(
            "/api/v1/models/training-runs", json={"data_source": "synthetic", "synthetic_count": 8}
        )
        assert started.status_code == 201, started.text
        run = TrainingRun.objects.get(pk=started.json()["id"])
        assert run.status == JobStatus.FAILED
        assert run.error.startswith("could not be queued") and "OperationalError" in run.error
        shown = supervisor.get(f"/api/v1/models/training-runs/{run.pk}").json()
        assert shown["status"] == JobStatus.FAILED

        # Back (empty, as after a crash without persistence): events and queued work resume.
        redis.start()
        feed.close()
        feed = wait_until(lambda: _try(line_feed, web.url, inspector), 30, "no websocket")
        status, back, _ = station.post("back-5", seed=5)
        assert status == 201 and back["decided_by"] == "model", back
        next_capture_event(feed, back["id"])
        wait_until(
            lambda: shadow_of(back["id"]) or worker.poll() is not None,
            60,
            "the worker did not run the shadow model after Redis came back",
        )
        assert shadow_of(back["id"]), worker_log.read_text()[-3000:]

        answered = [body["id"] for status, body, _ in station.answers if status == 201]
        assert len(answered) == len(station.answers) == 6
        assert Capture.objects.filter(pk__in=answered).count() == 6  # lost: 0
        # The web process logged each publish it gave up on, and how long it tried.
        gave_up = [float(s) for s in re.findall(r"gave up after ([\d.]+) s", web.log.read_text())]
        assert len(gave_up) >= 4 and max(gave_up) < 2, gave_up
        print(
            f"\nredis faults: posted 6, 201: {len(answered)}, in the database: "
            f"{Capture.objects.filter(pk__in=answered).count()}, 5xx: 0; seconds per capture: "
            f"up {up_seconds:.2f}, frozen {frozen_seconds:.2f}, "
            f"down {', '.join(f'{s:.2f}' for _, _, s in down)}; publish gave up after {gave_up} s"
        )
    finally:
        for client in (station.http if station else None, inspector, supervisor, feed):
            if client is not None:
                client.close()
        stop(worker)
        web.close()


def _try(function, *args):
    try:
        return function(*args)
    except Exception:  # not up yet
        return None
