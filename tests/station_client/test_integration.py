"""The station client as a station runs it (`python -m station_client`, a process of its own)
against a real uvicorn on PostgreSQL and Redis: the server killed in the middle (captures
buffered, exit 0), restarted, flushed (each capture in the database once, with its key); a
human verdict reaching the waiting station over its websocket; and the edge policy deciding
with the line's ONNX model while the server is down, that decision recorded by the server as
an edge decision once it is back."""

import json
import subprocess
import sys
import time
import uuid
from collections import Counter

import httpx
import pytest
from channels.layers import channel_layers

from inspection import services
from inspection.models import Capture
from models_registry import services as registry_services
from models_registry import serving
from models_registry.services import edge as edge_services
from station_client import Buffer
from tests.factories import ProductionLineFactory, UserFactory, image_bytes, station_with_token
from tests.integration.conftest import ROOT, child_env
from tests.integration.fault_services import WebProcess, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def station_cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "station_client", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def capture_cli(image, *, url, token, line, buffer, wait="0") -> dict:
    done = station_cli("capture", str(image), "--url", url, "--token", token, "--line", line,
                       "--buffer", str(buffer), "--json", "--wait", wait)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def channels_prefix(redis_url, settings):
    """One channel-layer prefix for the web process and this test (which records verdicts)."""
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    layer = settings.CHANNEL_LAYERS["default"]
    settings.CHANNEL_LAYERS = {
        "default": {**layer, "CONFIG": {**layer.get("CONFIG", {}), "prefix": prefix}}
    }
    channel_layers.backends = {}
    yield prefix
    channel_layers.backends = {}


def phones(tmp_path, count: int) -> list:
    paths = []
    for n in range(count):
        path = tmp_path / f"phone-{n}.jpg"
        path.write_bytes(image_bytes(128, 96, seed=n))
        paths.append(path)
    return paths


def test_captures_made_while_the_server_is_down_are_flushed_exactly_once(postgres, tmp_path):
    line = ProductionLineFactory(code="L1", automation_level="manual")  # every capture pending
    station = station_with_token(line=line, name="S1")
    env = child_env(CHANNELS_PREFIX=f"test-{uuid.uuid4().hex[:8]}")
    web = WebProcess(env, tmp_path / "uvicorn-1.log")
    web.start()
    buffer = tmp_path / "station.sqlite3"
    images = phones(tmp_path, 5)
    options = {"url": web.url, "token": station.token, "line": "L1", "buffer": buffer}
    try:
        online = [capture_cli(image, **options) for image in images[:2]]
        assert [c["status"] for c in online] == ["pending", "pending"]
        web.kill()
        started = time.monotonic()
        offline = [capture_cli(image, **options) for image in images[2:]]
        offline_seconds = (time.monotonic() - started) / len(offline)
        assert [(c["status"], c["action"]) for c in offline] == [("buffered", "hold")] * 3
        assert Capture.objects.count() == 2

        web = WebProcess(env, tmp_path / "uvicorn-2.log", port=web.port)
        web.start()
        # The first buffered capture reached the server but the station crashed before it
        # wrote the answer down: the buffer still holds it, with its key.
        with Buffer(buffer) as kept:
            crashed = kept.get(offline[0]["key"])
        first = httpx.post(
            f"{web.url}/api/v1/captures",
            headers={"Authorization": f"Token {station.token}"},
            data={"line": "L1", "idempotency_key": crashed.idempotency_key},
            files={"image": (crashed.filename, crashed.image, crashed.content_type)},
            timeout=30,
        )
        assert first.status_code == 201, first.text

        flushed = station_cli("flush", "--url", web.url, "--token", station.token, "--buffer",
                              str(buffer), "--json")  # fmt: skip
        assert flushed.returncode == 0, flushed.stderr
        assert json.loads(flushed.stdout) == {"sent": 3, "left": 0, "rejected": 0}
        again = station_cli("flush", "--url", web.url, "--token", station.token, "--buffer",
                            str(buffer), "--json")  # fmt: skip
        assert json.loads(again.stdout)["sent"] == 0
    finally:
        web.close()

    keys = [c["key"] for c in online + offline]
    stored = Counter(
        Capture.objects.filter(station=station).values_list("idempotency_key", flat=True)
    )
    assert stored == Counter(keys)  # every capture once, with the key the station made
    with Buffer(buffer) as kept:
        resent = kept.get(crashed.idempotency_key)
        assert resent.http_status == 200 and resent.capture_id == first.json()["id"]
        assert all(kept.get(key).state == "sent" for key in keys)
    print(
        f"\nstation client: a capture with the server down buffered in {offline_seconds:.1f} s "
        "(process start, 4 tries, exit 0); 3 flushed after the restart, each stored once"
    )


def test_a_pending_capture_gets_the_inspectors_verdict_over_the_station_websocket(
    postgres, channels_prefix, tmp_path
):
    line = ProductionLineFactory(code="L2", automation_level="assisted")  # a human decides
    station = station_with_token(line=line, name="S1")
    inspector = UserFactory(username="ines", roles=["inspector"], lines=[line])
    web = WebProcess(child_env(CHANNELS_PREFIX=channels_prefix), tmp_path / "uvicorn.log")
    web.start()
    log = tmp_path / "station.log"
    image = phones(tmp_path, 1)[0]
    try:
        with log.open("w") as stderr:
            waiting = subprocess.Popen(
                [sys.executable, "-m", "station_client", "capture", str(image), "--url", web.url,
                 "--token", station.token, "--line", "L2", "--buffer",
                 str(tmp_path / "station.sqlite3"), "--json", "--wait", "60", "-v"],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True,
            )  # fmt: skip
            wait_until(
                lambda: "waiting on the station websocket" in log.read_text(),
                60,
                f"the station never waited on its websocket:\n{log.read_text()}",
            )
            capture = Capture.objects.get(station=station)
            decided_at = time.monotonic()
            services.verdict_record(capture_id=capture.pk, user=inspector, verdict="fail")
            out, _ = waiting.communicate(timeout=30)
            reached_after = time.monotonic() - decided_at
    finally:
        web.close()
    assert waiting.returncode == 0, log.read_text()
    printed = json.loads(out)
    assert (printed["status"], printed["verdict"], printed["decided_by"]) == (
        "decided", "fail", "human",
    )  # fmt: skip
    assert printed["id"] == str(capture.pk)
    assert "from the station websocket" in log.read_text()
    assert reached_after < 5
    print(
        "\nstation client: the inspector's verdict reached the waiting station over its "
        f"websocket {reached_after:.2f} s after it was recorded"
    )


def test_the_edge_policy_decides_with_the_lines_model_while_the_server_is_down(
    postgres, model_artifact, monkeypatch, tmp_path
):
    # No worker in this test: the export that would go to the training queue runs here.
    monkeypatch.setattr(edge_services, "task_send_on_commit", lambda *args, **kwargs: None)
    version = registry_services.model_version_register(path=model_artifact, name="tiny")
    assert edge_services.edge_export_execute(model_version_id=version.pk)["status"] == "ready"
    version.refresh_from_db()
    image = phones(tmp_path, 1)[0]
    from vision.images import decode_image

    score = serving.predict(
        sha256=version.sha256, artifact=version.artifact, image=decode_image(image.read_bytes())
    ).score
    # Thresholds that make this phone a confident fail, on the server and at the edge alike.
    threshold = max(0.0, score - 0.05)
    line = ProductionLineFactory(
        code="L1", automation_level="partial", outage_policy="edge",
        pass_threshold=threshold, fail_threshold=threshold,
    )  # fmt: skip
    registry_services.deployment_set(line=line, model_version=version, role="production")
    station = station_with_token(line=line, name="S1")
    env = child_env(CHANNELS_PREFIX=f"test-{uuid.uuid4().hex[:8]}")
    web = WebProcess(env, tmp_path / "uvicorn.log")
    web.start()
    buffer = tmp_path / "station.sqlite3"
    options = {"url": web.url, "token": station.token, "line": "L1", "buffer": buffer}
    try:
        online = capture_cli(image, **options)  # and, online, the line's policy and model
    finally:
        web.kill()
    assert (online["status"], online["verdict"], online["decided_by"]) == (
        "decided", "fail", "model",
    )  # fmt: skip
    model = tmp_path / "station-L1.onnx"
    assert model.exists()
    started = time.monotonic()
    offline = capture_cli(image, **options)
    offline_seconds = time.monotonic() - started
    assert offline["status"] == "buffered" and offline["policy"] == "edge"
    assert (offline["edge_verdict"], offline["action"]) == ("fail", "fail")
    with Buffer(buffer) as kept:
        assert kept.state_get("model:L1")[0]["sha256"] == version.edge_export["sha256"]
        assert kept.get(offline["key"]).outage_action == "fail"

    # The server is back: the flush uploads the edge's decision with the capture, and the
    # server records it as made at the edge, with the model version the station ran.
    web = WebProcess(env, tmp_path / "uvicorn-2.log", port=web.port)
    web.start()
    try:
        flushed = station_cli("flush", "--url", web.url, "--token", station.token, "--buffer",
                              str(buffer), "--json")  # fmt: skip
        assert flushed.returncode == 0, flushed.stdout + flushed.stderr
        assert json.loads(flushed.stdout) == {"sent": 1, "left": 0, "rejected": 0}
        with Buffer(buffer) as kept:
            capture_id = kept.get(offline["key"]).capture_id
        seen = httpx.get(
            f"{web.url}/api/v1/captures/{capture_id}",
            headers={"Authorization": f"Token {station.token}"},
            timeout=30,
        ).json()
    finally:
        web.close()
    assert (seen["status"], seen["verdict"], seen["decided_by"], seen["reason"]) == (
        "decided", "fail", "edge", "edge",
    )  # fmt: skip
    assert seen["edge"]["model_version"] == version.pk
    assert seen["edge"]["model_sha256"] == version.edge_export["sha256"]
    assert seen["edge"]["model_label"] == version.label
    assert seen["audit_status"] == "pending"  # every edge verdict is reviewed by default
    stored = Capture.objects.get(station=station, idempotency_key=offline["key"])
    assert stored.decision.edge_model_version_id == version.pk
    assert stored.predictions.get().role == "production"  # the server's reading, for the record
    print(
        f"\nstation client: edge verdict with the server down in {offline_seconds:.1f} s "
        "(process start, 4 tries, model load and run); uploaded as an edge decision after"
    )
