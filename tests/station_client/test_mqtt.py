"""`mqtt`: the bridge between a PLC and the platform, on a real mosquitto (a port of its own)
with the fake station API: a trigger answered with the newest image's verdict; a pending
capture published once decided; corrections; a trigger while the server is down answered with
the line's outage action, and the buffer sent when it is back; a restarted broker reconnected
to; a killed bridge process's last will saying `offline`."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading

import httpx
import pytest

from station_client import Buffer, StationClient
from station_client.mqtt import MqttBridge, broker_address
from tests.integration.conftest import ROOT, free_port
from tests.integration.fault_services import wait_until
from tests.station_client.fakes import StationApi, jpeg
from tests.station_client.mosquitto import Mosquitto, Subscriber

VERDICT, BRIDGE = "inspection/L1/verdict", "inspection/L1/bridge"
TRIGGER, CORRECTION = "inspection/L1/trigger", "inspection/L1/correction"


@pytest.fixture
def broker(tmp_path):
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def plc(broker):
    plc = Subscriber(broker.port, "inspection/#")
    yield plc
    plc.close()


@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "camera"
    folder.mkdir()
    return folder


def photo(folder, name, *, seed, at):
    path = folder / name
    path.write_bytes(jpeg(seed=seed))
    os.utime(path, ns=(at * 10**9, at * 10**9))
    return path


def bridge_for(api, buffer, folder, broker, *, down=None, **options):
    inner = api.transport()

    def handler(request):
        if down is not None and down["yes"]:
            raise httpx.ConnectError("refused")
        return inner.handle_request(request)

    # The websocket goes to a closed loopback port (refused at once): verdicts come by reading.
    client = StationClient(
        "http://127.0.0.1:9", "t", buffer=buffer, transport=httpx.MockTransport(handler),
        sleep=lambda s: None,
    )  # fmt: skip
    return MqttBridge(
        client, line="L1", folder=folder, broker=broker.address, retry_every=0.3, **options
    )


@contextlib.contextmanager
def running(bridge):
    stopping, failures = threading.Event(), []

    def loop():
        try:
            bridge.start()
            while not stopping.is_set():
                bridge.step(timeout=0.05)
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(exc)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        assert bridge.connected.wait(10), "the bridge never connected to the broker"
        yield bridge
    finally:
        stopping.set()
        thread.join(10)
        bridge.stop()
    assert not failures, failures


def test_broker_addresses():
    assert broker_address("plc.local") == ("plc.local", 1883)
    assert broker_address("10.0.0.5:8883") == ("10.0.0.5", 8883)
    assert broker_address("[::1]:1884") == ("::1", 1884)
    with pytest.raises(ValueError):
        broker_address("host:0")


def test_a_trigger_is_answered_with_the_verdict_of_the_newest_image_not_sent(
    tmp_path, broker, plc, folder
):
    photo(folder, "older.jpg", seed=1, at=1_000)
    photo(folder, "newer.jpg", seed=2, at=2_000)
    (folder / "writing.jpg.part").write_bytes(b"half")
    api = StationApi(verdict="fail")
    with Buffer(tmp_path / "b.sqlite3") as buffer, running(bridge_for(api, buffer, folder, broker)):
        assert plc.next(BRIDGE)[0] == b"online"
        plc.publish(TRIGGER, {"trigger_id": "t1"})
        first = plc.next_json(VERDICT, trigger_id="t1")
        plc.publish(TRIGGER, b"")  # no payload at all: the next image, no trigger id
        second = plc.next_json(VERDICT, trigger_id=None)
        plc.publish(TRIGGER, {"trigger_id": "t3"})
        nothing_left = plc.next_json(VERDICT, trigger_id="t3")
        plc.publish(TRIGGER, {"trigger_id": "t4", "image": "older.jpg"})  # asked for by name
        named = plc.next_json(VERDICT, trigger_id="t4")
        plc.publish(TRIGGER, {"trigger_id": "t5", "image": "../b.sqlite3"})
        outside = plc.next_json(VERDICT, trigger_id="t5")

    stored = {c["idempotency_key"]: c for c in api.captures.values()}
    assert first["image"] == "newer.jpg" and second["image"] == "older.jpg"
    for answer in (first, second, named):
        assert set(answer) == {"trigger_id", "id", "status", "verdict", "decided_by", "key",
                               "image"}  # fmt: skip
        assert (answer["status"], answer["verdict"], answer["decided_by"]) == (
            "decided", "fail", "model",
        )  # fmt: skip
        assert stored[answer["key"]]["id"] == answer["id"]
    assert len(stored) == 3
    sent = [s for s in api.seen if s.path == "/api/v1/captures"]
    assert json.loads(sent[0].form["metadata"]) == {"trigger_id": "t1"}
    assert nothing_left["status"] == "error" and "no new image" in nothing_left["error"]
    assert outside["status"] == "error" and "file name" in outside["error"]


def test_a_pending_capture_is_published_once_decided_and_corrections_follow(
    tmp_path, broker, plc, folder
):
    photo(folder, "p1.jpg", seed=1, at=1_000)
    api = StationApi(status="pending")
    with Buffer(tmp_path / "b.sqlite3") as buffer:
        bridge = bridge_for(api, buffer, folder, broker)
        with running(bridge):
            plc.publish(TRIGGER, {"trigger_id": "t1"})
            with pytest.raises(pytest.fail.Exception):
                plc.next(VERDICT, timeout=0.8)  # a human decides: nothing yet
            api.decide("fail")
            verdict = plc.next_json(VERDICT, trigger_id="t1")
            # An inspector's undo, as the station websocket brings it.
            bridge.client.message_dispatch(
                {"type": "correction", "capture": {"id": verdict["id"], "status": "pending"}}
            )
            correction = plc.next_json(CORRECTION)
    assert (verdict["status"], verdict["verdict"], verdict["decided_by"]) == (
        "decided", "fail", "human",
    )  # fmt: skip
    assert verdict["id"] == next(iter(api.captures.values()))["id"]
    assert correction == {
        "type": "correction",
        "capture": {"id": verdict["id"], "status": "pending"},
        "trigger_id": "t1",
        "image": "p1.jpg",
    }


def test_a_trigger_while_the_server_is_down_answers_with_the_outage_action(
    tmp_path, broker, plc, folder
):
    api, down = StationApi(verdict="pass"), {"yes": False}
    api.line["outage_policy"] = "reject"
    with Buffer(tmp_path / "b.sqlite3") as buffer:
        bridge = bridge_for(api, buffer, folder, broker, down=down)
        with running(bridge):  # online at the start: the line's policy is read and kept
            plc.next(BRIDGE)
            down["yes"] = True
            photo(folder, "p1.jpg", seed=1, at=1_000)
            plc.publish(TRIGGER, {"trigger_id": "t1"})
            buffered = plc.next_json(VERDICT, trigger_id="t1")
            assert api.captures == {}
            down["yes"] = False
            # Sent when the server answers again; it passes what the station rejected.
            correction = plc.next_json(CORRECTION)
        assert buffer.count("queued") == 0
    assert buffered["status"] == "buffered"
    assert (buffered["action"], buffered["policy"], buffered["edge_verdict"]) == (
        "reject", "reject", None,
    )  # fmt: skip
    assert list(api.captures) == [buffered["key"]]  # the key made before the outage
    assert correction["capture"]["outage_action"] == "reject"
    assert correction["capture"]["verdict"] == "pass"


def test_the_bridge_reconnects_to_a_restarted_broker(tmp_path, broker, plc, folder):
    api = StationApi()
    with Buffer(tmp_path / "b.sqlite3") as buffer:
        bridge = bridge_for(api, buffer, folder, broker, reconnect_delay=(1, 2))
        with running(bridge):
            plc.next(BRIDGE)
            broker.stop()
            wait_until(lambda: not bridge.connected.is_set(), 10, "the bridge never saw it go")
            broker.start()  # the same port; the bridge and the PLC both come back on their own
            plc.next(BRIDGE, timeout=15, payload=b"online")
            photo(folder, "p1.jpg", seed=1, at=1_000)
            plc.publish(TRIGGER, {"trigger_id": "after"})
            assert plc.next_json(VERDICT, trigger_id="after")["status"] == "decided"


def test_a_killed_bridge_process_leaves_offline_as_its_last_will(tmp_path, broker, plc, folder):
    """The CLI as a station runs it, with no server to reach: a trigger still answers
    (buffered, held), and a SIGKILL leaves `offline`, retained, on the bridge topic."""
    photo(folder, "p1.jpg", seed=1, at=1_000)
    dead = f"http://127.0.0.1:{free_port()}"
    log = (tmp_path / "bridge.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "station_client", "mqtt", "--url", dead, "--token", "t",
         "--line", "L1", "--broker", broker.address, "--folder", str(folder),
         "--buffer", str(tmp_path / "b.sqlite3")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True,
    )  # fmt: skip
    try:
        assert plc.next(BRIDGE, timeout=20)[0] == b"online"
        plc.publish(TRIGGER, {"trigger_id": "t1"})
        buffered = plc.next_json(VERDICT, trigger_id="t1", timeout=20)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert plc.next(BRIDGE) == (b"offline", False)  # the will, sent at once
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        log.close()
    assert (buffered["status"], buffered["action"], buffered["image"]) == (
        "buffered", "hold", "p1.jpg",
    )  # fmt: skip
    with Buffer(tmp_path / "b.sqlite3") as buffer:
        assert buffer.get(buffered["key"]).state == "queued"
    late = Subscriber(broker.port, BRIDGE)  # a PLC that connects afterwards sees it too
    try:
        assert late.next(BRIDGE) == (b"offline", True)
    finally:
        late.close()
