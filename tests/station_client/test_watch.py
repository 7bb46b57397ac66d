"""`watch FOLDER`: a file is taken once it stands still, once; partial files are left alone;
while the server is down files are buffered and sent in order when it is back; a restarted
watcher (a new process) sends nothing twice."""

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from station_client import Buffer, StationClient
from station_client.watch import FolderWatcher, is_candidate
from tests.integration.conftest import ROOT
from tests.station_client.fakes import LoopbackServer, StationApi, jpeg


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


_made: list[FolderWatcher] = []


@pytest.fixture(autouse=True)
def _listeners_stopped():
    """Every watcher made in a test has its websocket listener stopped at the end."""
    yield
    while _made:
        _made.pop().close()


def watcher_for(api, buffer, folder, clock, events, *, down=None):
    inner = api.transport()

    def handler(request):
        if down is not None and down["yes"]:
            raise httpx.ConnectError("refused")
        return inner.handle_request(request)

    client = StationClient(
        "http://s.test", "t", buffer=buffer, transport=httpx.MockTransport(handler),
        sleep=lambda s: None,
    )  # fmt: skip
    watcher = FolderWatcher(
        client, folder, line="L1", emit=events.append, settle_seconds=1.0, clock=clock
    )
    _made.append(watcher)
    return watcher


def test_partial_and_hidden_files_are_left_alone():
    assert is_candidate("phone-1.jpg") and is_candidate("A.PNG")
    for name in ("phone.jpg.part", "phone.tmp", ".phone.jpg", "phone.jpg~", "notes.txt"):
        assert not is_candidate(name)


def test_a_file_is_taken_once_it_stands_still_and_never_twice(tmp_path):
    folder = tmp_path / "camera"
    folder.mkdir()
    api, clock, events = StationApi(), Clock(), []
    with Buffer(tmp_path / "b.sqlite3") as buffer:
        watcher = watcher_for(api, buffer, folder, clock, events)
        growing = folder / "p1.jpg"
        data = jpeg(seed=1)
        growing.write_bytes(data[:100])  # the camera is still writing
        watcher.poll_once()
        clock.now += 2
        growing.write_bytes(data)
        os.utime(growing, ns=(1, 2_000_000_000))
        watcher.poll_once()  # changed since the last look: not yet
        assert api.keys_posted() == []
        clock.now += 0.5
        watcher.poll_once()  # unchanged, but only for 0.5 s
        assert api.keys_posted() == []
        clock.now += 1
        watcher.poll_once()
        assert len(api.keys_posted()) == 1
        assert [e["file"] for e in events if e["event"] == "capture"] == ["p1.jpg"]
        clock.now += 5
        watcher.poll_once()
        assert len(api.keys_posted()) == 1
        # A restarted watcher remembers (the buffer), even the first time it looks.
        again = watcher_for(api, buffer, folder, clock, events)
        again.poll_once()
        clock.now += 2
        again.poll_once()
        assert len(api.keys_posted()) == 1
        # A file written again under the same name is a new phone.
        growing.write_bytes(jpeg(seed=2))
        os.utime(growing, ns=(1, 3_000_000_000))
        again.poll_once()
        clock.now += 2
        again.poll_once()
        assert len(api.keys_posted()) == 2


def test_while_the_server_is_down_files_are_buffered_then_sent_in_order(tmp_path):
    folder = tmp_path / "camera"
    folder.mkdir()
    api, clock, events, down = StationApi(), Clock(), [], {"yes": True}
    with Buffer(tmp_path / "b.sqlite3") as buffer:
        watcher = watcher_for(api, buffer, folder, clock, events, down=down)
        for n in range(3):
            path = folder / f"p{n}.jpg"
            path.write_bytes(jpeg(seed=n))
            os.utime(path, ns=(1, (n + 1) * 1_000_000_000))
        watcher.poll_once()
        clock.now += 2
        watcher.poll_once()
        captured = [e for e in events if e["event"] == "capture"]
        assert [(e["file"], e["status"], e["action"]) for e in captured] == [
            ("p0.jpg", "buffered", "hold"),
            ("p1.jpg", "buffered", "hold"),
            ("p2.jpg", "buffered", "hold"),
        ]
        keys = [e["key"] for e in captured]
        down["yes"] = False
        clock.now += 10
        watcher.poll_once()
        assert api.keys_posted() == keys  # oldest first, each once
        assert {"event": "flush", "sent": 3, "left": 0, "rejected": 0} in events


def test_the_watch_command_posts_new_files_and_a_restart_sends_none_twice(tmp_path):
    folder = tmp_path / "camera"
    folder.mkdir()
    api = StationApi()
    buffer = str(tmp_path / "b.sqlite3")
    with LoopbackServer(api) as server:
        command = [sys.executable, "-m", "station_client", "watch", str(folder), "--url",
                   server.url, "--token", "t", "--line", "L1", "--buffer", buffer,
                   "--interval", "0.1", "--settle", "0.3"]  # fmt: skip

        def watch_until(posts: int) -> list[dict]:
            process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 30
            while len(api.keys_posted()) < posts and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)  # time to take anything more (nothing should come)
            process.send_signal(signal.SIGTERM)
            out, _ = process.communicate(timeout=20)
            assert process.returncode == 0
            return [json.loads(line) for line in out.splitlines()]

        (folder / "a.jpg").write_bytes(jpeg(seed=1))
        (folder / "b.jpg.part").write_bytes(jpeg(seed=2))  # still being copied
        first = watch_until(1)
        assert [e["file"] for e in first if e["event"] == "capture"] == ["a.jpg"]
        (folder / "b.jpg.part").rename(folder / "b.jpg")
        second = watch_until(2)
        assert [e["file"] for e in second if e["event"] == "capture"] == ["b.jpg"]
    assert len(api.keys_posted()) == 2 == len(set(api.keys_posted()))
