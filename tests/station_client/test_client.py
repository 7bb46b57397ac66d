"""Waiting for a pending verdict (the station websocket with the Authorization header, long
polling when it cannot be used), corrections, and what a buffered phone gets under each outage
policy, the edge model included (fetched with If-None-Match, run with onnxruntime)."""

import hashlib
import json
import threading
import time

import pytest
from websockets.sync.server import serve

from station_client import Buffer, StationClient
from station_client.edge import image_pixels, verdict_for
from tests.station_client.fakes import LoopbackServer, StationApi, brightness_model, jpeg


@pytest.fixture
def buffer(tmp_path):
    with Buffer(tmp_path / "station.sqlite3") as buffer:
        yield buffer


class StationSocket:
    """A websocket server on loopback speaking the station protocol: hello, then the messages
    the test queues. Records each connection's path and Authorization header."""

    def __init__(self, station: int = 7) -> None:
        self.station = station
        self.connections: list[tuple[str, str | None]] = []
        self.outbox: list[dict] = []
        self.server = serve(self._handle, "127.0.0.1", 0)
        self.port = self.server.socket.getsockname()[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handle(self, socket) -> None:
        request = socket.request
        self.connections.append((request.path, request.headers.get("Authorization")))
        socket.send(json.dumps({"type": "hello", "station": self.station, "line": "L1"}))
        for message in self.outbox:
            time.sleep(0.05)
            socket.send(json.dumps(message))
        for _ in socket:  # until the station closes
            pass

    def close(self) -> None:
        self.server.shutdown()


def test_a_pending_verdict_arrives_on_the_station_websocket_and_corrections_reach_the_hook(
    buffer,
):
    api = StationApi(status="pending")
    socket = StationSocket()
    corrections = []
    try:
        client = StationClient(
            f"http://127.0.0.1:{socket.port}", "t0k", buffer=buffer, transport=api.transport(),
            on_correction=corrections.append,
        )  # fmt: skip

        def queue_messages(seen):
            reply = api._normal(seen)
            capture_id = json.loads(reply[2])["id"]
            earlier = {"id": "earlier", "status": "decided", "verdict": "fail"}
            socket.outbox += [
                {"type": "correction", "capture": earlier},
                {"type": "decision", "capture": {"id": capture_id, "status": "decided",
                                                 "verdict": "fail", "decided_by": "human"}},
            ]  # fmt: skip
            return reply

        api.script = [queue_messages]
        started = time.monotonic()
        result = client.capture(jpeg(), line="L1", wait=20)
        assert time.monotonic() - started < 5
        assert (result.status, result.verdict, result.decided_by) == ("decided", "fail", "human")
        # The token went in the header, never in the URL.
        assert socket.connections == [("/ws/stations/7/", "Token t0k")]
        assert corrections == [{"id": "earlier", "status": "decided", "verdict": "fail"}]
        assert client.station_id() == 7  # learnt from the capture answer, kept in the buffer
    finally:
        socket.close()


def test_without_a_websocket_the_client_long_polls_until_the_verdict(buffer):
    api = StationApi(status="pending")
    with LoopbackServer(api) as server:  # plain HTTP: the websocket upgrade fails
        client = StationClient(server.url, "t0k", buffer=buffer)
        threading.Timer(1.0, api.decide, args=("fail",)).start()
        result = client.capture(jpeg(), line="L1", wait=20)
    assert (result.status, result.verdict) == ("decided", "fail")
    polls = [s.path for s in api.seen if s.path.startswith("/api/v1/captures/")]
    assert polls and all("wait=" in path for path in polls[1:])


def test_the_wait_ends_pending_when_no_one_decides_in_time(buffer):
    api = StationApi(status="pending")
    client = StationClient("http://s.test", "t", buffer=buffer, transport=api.transport())
    result = client.capture(jpeg(), line="L1", wait=0.5)
    assert result.status == "pending" and result.id


def offline(api: StationApi, buffer: Buffer) -> StationClient:
    """A client that has read its line once, and whose server is now gone."""
    client = StationClient("http://s.test", "t", buffer=buffer, transport=api.transport())
    client.line_refresh("L1", force=True)
    client.close()
    import httpx

    def refused(request):
        raise httpx.ConnectError("refused")

    return StationClient(
        "http://s.test", "t", buffer=buffer, transport=httpx.MockTransport(refused),
        sleep=lambda s: None,
    )  # fmt: skip


@pytest.mark.parametrize("policy", ["hold", "reject"])
def test_a_buffered_phone_gets_the_lines_outage_policy(buffer, policy):
    api = StationApi()
    api.line["outage_policy"] = policy
    result = offline(api, buffer).capture(jpeg(), line="L1")
    assert result.to_dict() == {
        "status": "buffered", "verdict": None, "id": None, "key": result.key,
        "policy": policy, "edge_verdict": None, "action": policy,
    }  # fmt: skip
    assert buffer.get(result.key).outage_action == policy


def test_a_station_that_never_read_its_line_holds_the_phone(buffer):
    import httpx

    def refused(request):
        raise httpx.ConnectError("refused")

    transport = httpx.MockTransport(refused)
    client = StationClient(
        "http://s.test", "t", buffer=buffer, transport=transport, sleep=lambda s: None
    )
    assert client.capture(jpeg(), line="L1").action == "hold"


def test_the_edge_policy_judges_with_the_kept_model_and_the_lines_thresholds(buffer, tmp_path):
    api = StationApi()
    api.line |= {"outage_policy": "edge", "pass_threshold": 0.3, "fail_threshold": 0.7}
    api.model = brightness_model(tmp_path / "m.onnx").read_bytes()
    client = offline(api, buffer)
    assert client.model_path("L1").read_bytes() == api.model  # fetched while online
    dark, bright, grey = (client.capture(jpeg(v), line="L1") for v in (20, 240, 128))
    assert (dark.edge_verdict, dark.action) == ("pass", "pass")
    assert (bright.edge_verdict, bright.action) == ("fail", "fail")
    assert (grey.edge_verdict, grey.action) == (None, "hold")  # unsure: held
    assert grey.policy == "edge"


def test_the_edge_model_is_fetched_again_only_when_it_changed(buffer, tmp_path):
    api = StationApi()
    api.line["outage_policy"] = "edge"
    api.model = brightness_model(tmp_path / "m.onnx").read_bytes()
    client = StationClient("http://s.test", "t", buffer=buffer, transport=api.transport())
    assert client.edge_model_sync("L1") == "downloaded"
    assert client.edge_model_sync("L1") == "unchanged"
    model_gets = [s for s in api.seen if s.path.endswith("/model")]
    assert "if-none-match" not in model_gets[0].headers
    assert model_gets[1].headers["if-none-match"] == f'"{hashlib.sha256(api.model).hexdigest()}"'
    assert buffer.state_get("model:L1")[0]["version"] == "3"
    api.model = api.model + b"\x00"  # a new production model (another ETag)
    assert client.edge_model_sync("L1") == "downloaded"
    assert client.model_path("L1").read_bytes() == api.model
    api.model = None  # the line has no production model any more
    assert client.edge_model_sync("L1") == "none"
    assert not client.model_path("L1").exists()


def test_a_damaged_download_is_not_kept(buffer, tmp_path):
    api = StationApi()
    good = brightness_model(tmp_path / "m.onnx").read_bytes()
    api.model = good
    client = StationClient("http://s.test", "t", buffer=buffer, transport=api.transport())
    assert client.edge_model_sync("L1") == "downloaded"
    api.script = [(200, {"X-Model-Sha256": "0" * 64, "ETag": '"x"'}, b"garbage")]
    assert client.edge_model_sync("L1") == "unreachable"
    assert client.model_path("L1").read_bytes() == good  # the old one stays


def test_a_phone_the_edge_passed_and_the_server_fails_is_reported_as_a_correction(buffer, tmp_path):
    api = StationApi(verdict="fail")
    api.line["outage_policy"] = "edge"
    api.model = brightness_model(tmp_path / "m.onnx").read_bytes()
    buffered = offline(api, buffer).capture(jpeg(20), line="L1")
    assert buffered.action == "pass"
    corrections = []
    online = StationClient(
        "http://s.test", "t", buffer=buffer, transport=api.transport(),
        on_correction=corrections.append,
    )  # fmt: skip
    assert online.flush().sent == 1
    assert [(c["verdict"], c["outage_action"]) for c in corrections] == [("fail", "pass")]


def test_an_edge_verdict_is_kept_with_the_capture_and_uploaded_with_it(buffer, tmp_path):
    api = StationApi(verdict="fail")
    api.line["outage_policy"] = "edge"
    api.model = brightness_model(tmp_path / "m.onnx").read_bytes()
    client = offline(api, buffer)
    decided, unsure = client.capture(jpeg(20), line="L1"), client.capture(jpeg(128), line="L1")
    kept = buffer.get(decided.key).edge_decision
    assert (kept["verdict"], kept["model_version"]) == ("pass", 3)  # X-Model-Version
    assert kept["model_sha256"] == hashlib.sha256(api.model).hexdigest()
    assert 0 <= kept["score"] < 0.3 and kept["decided_at"].endswith("+00:00")
    assert buffer.get(unsure.key).edge_decision is None  # held: the server decides it

    corrections = []
    online = StationClient(
        "http://s.test", "t", buffer=buffer, transport=api.transport(),
        on_correction=corrections.append,
    )  # fmt: skip
    assert online.flush().sent == 2
    forms = {s.form["idempotency_key"].decode(): s.form for s in api.seen if s.form}
    assert json.loads(forms[decided.key]["edge_decision"]) == kept
    assert "edge_decision" not in forms[unsure.key]
    assert {c["idempotency_key"] for c in corrections} == {decided.key}  # the fake re-decides


def test_an_edge_decision_the_server_refuses_does_not_lose_the_capture(buffer, tmp_path):
    api = StationApi()
    api.line["outage_policy"] = "edge"
    api.model = brightness_model(tmp_path / "m.onnx").read_bytes()
    buffered = offline(api, buffer).capture(jpeg(20), line="L1")
    refusal = {"error": {"code": "unknown_model_version", "message": "no model version 3"}}
    api.script = [(400, {"Content-Type": "application/json"}, json.dumps(refusal).encode())]
    online = StationClient("http://s.test", "t", buffer=buffer, transport=api.transport())
    assert online.flush().to_dict() == {"sent": 1, "left": 0, "rejected": 0}
    posts = [s.form for s in api.seen if s.path == "/api/v1/captures"]
    assert ["edge_decision" in form for form in posts] == [True, False]  # sent again without
    assert buffer.get(buffered.key).state == "sent"


def test_the_edge_input_is_rgb_nchw_cropped_to_multiples_of_8():
    pixels = image_pixels(jpeg(100, size=(70, 45)))
    assert pixels.shape == (1, 3, 40, 64) and pixels.dtype.name == "float32"
    assert 90 < float(pixels.mean()) < 110  # 0..255, not normalised
    assert verdict_for(0.7, pass_threshold=0.3, fail_threshold=0.7) == "fail"
    assert verdict_for(0.29, pass_threshold=0.3, fail_threshold=0.7) == "pass"
    assert verdict_for(0.3, pass_threshold=0.3, fail_threshold=0.7) is None
