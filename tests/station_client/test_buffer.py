"""The station's buffer: a capture's key is on disk before it is sent, the buffer is sent in
order, each capture reaches the server's records once (a resend after a crash included), and a
restarted station (a new process) finds all of it again."""

import subprocess
import sys

import httpx

from station_client import Buffer, StationClient
from station_client.buffer import QUEUED, REJECTED, SENT
from tests.integration.conftest import ROOT
from tests.station_client.fakes import LoopbackServer, StationApi, jpeg


def client_for(api: StationApi, buffer: Buffer, **kwargs) -> StationClient:
    return StationClient(
        "http://station.test", "t0k", buffer=buffer, transport=api.transport(),
        sleep=lambda s: None, **kwargs,
    )  # fmt: skip


def test_a_capture_is_stored_with_its_key_before_it_is_sent(tmp_path):
    api = StationApi()
    keys_on_disk_when_sent = []

    def check_disk(seen):
        key = seen.form["idempotency_key"].decode()
        with Buffer(tmp_path / "b.sqlite3") as other:  # another connection: what a crash leaves
            keys_on_disk_when_sent.append(other.get(key) is not None)
        return api._normal(seen)

    api.script = [check_disk]
    with Buffer(tmp_path / "b.sqlite3") as buffer:
        result = client_for(api, buffer).capture(jpeg(), line="L1")
        assert result.status == "decided" and result.verdict == "pass"
        assert keys_on_disk_when_sent == [True]
        stored = buffer.get(result.key)
        assert stored.state == SENT and stored.http_status == 201
        assert stored.capture_id == result.id and stored.image is None  # bytes go once answered


def test_the_buffer_is_sent_in_order_each_capture_once_and_survives_a_restart(tmp_path):
    path = tmp_path / "b.sqlite3"
    with Buffer(path) as buffer:
        keys = [buffer.add(line="L1", image=jpeg(seed=n)).idempotency_key for n in range(5)]
    assert len(set(keys)) == 5
    api = StationApi()
    with Buffer(path) as buffer:  # the station restarted
        assert [c.idempotency_key for c in buffer.queued()] == keys
        client = client_for(api, buffer)
        result = client.flush()
        assert (result.sent, result.left) == (5, 0)
        assert client.flush().sent == 0  # nothing is sent twice
        assert buffer.count(SENT) == 5 and buffer.count(QUEUED) == 0
    assert api.keys_posted() == keys
    assert len(api.captures) == 5


def test_a_resend_after_a_lost_answer_carries_the_same_key_and_gets_the_first_result(tmp_path):
    api = StationApi()

    def stored_then_dropped(seen):
        api._normal(seen)  # the server stored it...
        raise httpx.ReadError("connection reset")  # ...and its answer never arrived

    api.script = [stored_then_dropped]
    with Buffer(tmp_path / "b.sqlite3") as buffer:
        result = client_for(api, buffer).capture(jpeg(), line="L1")
        # The retry, with the same key, got the first answer: 200, the same capture.
        assert result.status == "decided"
        assert api.keys_posted() == [result.key, result.key]
        assert len(api.captures) == 1
        assert result.id == api.captures[result.key]["id"]
        assert buffer.get(result.key).http_status == 200


def test_a_rejected_capture_leaves_the_queue_and_the_rest_still_goes(tmp_path):
    api = StationApi()
    api.script = [
        (415, {"Content-Type": "application/json"},
         b'{"error": {"code": "not_image", "message": "This is not an image."}}'),
    ]  # fmt: skip
    with Buffer(tmp_path / "b.sqlite3") as buffer:
        first = buffer.add(line="L1", image=b"not an image")
        buffer.add(line="L1", image=jpeg())
        result = client_for(api, buffer).flush()
        assert (result.sent, result.left, result.rejected) == (1, 0, 1)
        rejected = buffer.get(first.idempotency_key)
        assert rejected.state == REJECTED and rejected.http_status == 415
        assert rejected.answer["error"]["code"] == "not_image"
        assert rejected.image == b"not an image"  # kept for the line lead to look at


def test_a_watched_file_is_taken_once_and_a_changed_one_again(tmp_path):
    with Buffer(tmp_path / "b.sqlite3") as buffer:
        buffer.add(line="L1", image=jpeg(), watched=("/cam/1.jpg", 100, 5))
    with Buffer(tmp_path / "b.sqlite3") as buffer:
        assert buffer.file_taken("/cam/1.jpg", size=100, mtime_ns=5)
        assert not buffer.file_taken("/cam/1.jpg", size=100, mtime_ns=6)
        assert not buffer.file_taken("/cam/2.jpg", size=100, mtime_ns=5)


def test_answered_captures_are_pruned_queued_ones_never(tmp_path):
    with Buffer(tmp_path / "b.sqlite3") as buffer:
        sent = buffer.add(line="L1", image=jpeg(), watched=("/cam/1.jpg", 1, 1))
        buffer.answered(sent.idempotency_key, http_status=201, answer={"id": "x"})
        waiting = buffer.add(line="L1", image=jpeg())
        assert buffer.prune(older_than_seconds=-1) == 1
        assert buffer.get(sent.idempotency_key) is None
        assert not buffer.file_taken("/cam/1.jpg", size=1, mtime_ns=1)
        assert buffer.get(waiting.idempotency_key).state == QUEUED


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "station_client", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_the_cli_buffers_while_nothing_answers_and_a_later_process_flushes_it(tmp_path):
    import json

    from tests.integration.conftest import free_port

    image = tmp_path / "phone.jpg"
    image.write_bytes(jpeg())
    buffer = str(tmp_path / "station.sqlite3")
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused
    keys = []
    for _ in range(2):
        done = run_cli("capture", str(image), "--url", down, "--token", "t", "--line", "L1",
                       "--buffer", buffer, "--json")  # fmt: skip
        assert done.returncode == 0, done.stderr
        printed = json.loads(done.stdout)
        assert printed["status"] == "buffered" and printed["action"] == "hold"
        keys.append(printed["key"])
    api = StationApi()
    with LoopbackServer(api) as server:
        done = run_cli("flush", "--url", server.url, "--token", "t", "--buffer", buffer, "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"sent": 2, "left": 0, "rejected": 0}
        again = run_cli("flush", "--url", server.url, "--token", "t", "--buffer", buffer, "--json")
        assert json.loads(again.stdout)["sent"] == 0
    assert api.keys_posted() == keys
    assert all(s.headers["authorization"] == "Token t" for s in api.seen)


def test_a_buffer_file_from_before_edge_decisions_keeps_its_queue(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE captures (seq INTEGER PRIMARY KEY AUTOINCREMENT, idempotency_key TEXT NOT"
        " NULL UNIQUE, line TEXT NOT NULL, image BLOB, filename TEXT NOT NULL, content_type TEXT"
        " NOT NULL, captured_at TEXT, metadata TEXT, source TEXT, state TEXT NOT NULL, attempts"
        " INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, answered_at REAL, http_status"
        " INTEGER, capture_id TEXT, answer TEXT, outage_action TEXT);"
        "INSERT INTO captures (idempotency_key, line, image, filename, content_type, state,"
        " created_at) VALUES ('old-key', 'L1', x'ffd8ff', 'a.jpg', 'image/jpeg', 'queued', 1);"
    )
    old.commit()
    old.close()
    with Buffer(path) as buffer:
        [queued] = buffer.queued()
        assert (queued.idempotency_key, queued.edge_decision) == ("old-key", None)
        decision = {"verdict": "fail", "model_version": 3, "decided_at": "2026-01-01T00:00:00Z"}
        buffer.outage_noted("old-key", "fail", edge_decision=decision)
        buffer.outage_noted("old-key", "hold", edge_decision=None)  # a later outage
        assert buffer.get("old-key").edge_decision == decision  # the phone left with it
    with Buffer(path) as again:  # opened again: nothing to add
        assert again.get("old-key").edge_decision == decision
