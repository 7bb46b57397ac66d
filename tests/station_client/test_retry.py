"""Which failures the station retries, how long it waits between tries (backoff with jitter,
or the server's Retry-After, capped), and that a bad request is never retried."""

import json
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from station_client import Buffer, RetryPolicy, ServerUnavailable, StationClient
from station_client.buffer import QUEUED, REJECTED
from station_client.retry import request_with_retries, retry_after_seconds
from tests.integration.conftest import ROOT
from tests.station_client.fakes import LoopbackServer, StationApi, jpeg

CREATED = (201, {"Content-Type": "application/json"}, b'{"id": "c1", "status": "decided"}')


def sequence(*replies):
    """send() answering the replies in turn (an exception instance is raised)."""
    calls = []

    def send():
        reply = replies[len(calls)]
        calls.append(reply)
        if isinstance(reply, Exception):
            raise reply
        status, headers = reply if isinstance(reply, tuple) else (reply, {})
        return httpx.Response(status, headers=headers, json={"error": {"code": "x"}})

    return send, calls


@pytest.mark.parametrize("status", [429, 502, 503, 504, 507])
def test_not_now_answers_are_retried(status):
    send, calls = sequence(status, 201)
    sleeps = []
    response = request_with_retries(send, policy=RetryPolicy(), sleep=sleeps.append)
    assert response.status_code == 201 and len(calls) == 2 and len(sleeps) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 415, 500])
def test_other_answers_are_final(status):
    send, calls = sequence(status, 201)
    response = request_with_retries(send, policy=RetryPolicy(), sleep=lambda s: None)
    assert response.status_code == status and len(calls) == 1


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("slow"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("dropped"),
        httpx.ReadError("reset"),
    ],
)
def test_connection_failures_and_timeouts_are_retried(error):
    send, calls = sequence(error, 201)
    assert request_with_retries(send, policy=RetryPolicy(), sleep=lambda s: None).status_code == 201
    assert len(calls) == 2


def test_the_backoff_grows_with_jitter_and_gives_up_after_the_attempts():
    send, calls = sequence(*[httpx.ConnectError("refused")] * 6)
    sleeps = []
    policy = RetryPolicy(attempts=6, base_delay=1.0, max_delay=8.0)
    with pytest.raises(ServerUnavailable, match="ConnectError"):
        request_with_retries(send, policy=policy, sleep=sleeps.append, rng=random.Random(1))
    assert len(calls) == 6 and len(sleeps) == 5
    ceilings = [1, 2, 4, 8, 8]  # doubling, capped
    for slept, ceiling in zip(sleeps, ceilings, strict=True):
        assert ceiling / 2 <= slept <= ceiling
    # Two stations failing together do not retry in step.
    other = [RetryPolicy().delay(n, None, random.Random(2)) for n in range(4)]
    mine = [RetryPolicy().delay(n, None, random.Random(3)) for n in range(4)]
    assert other != mine


def test_retry_after_is_honoured_and_capped():
    send, _ = sequence((503, {"Retry-After": "2"}), (429, {"Retry-After": "3600"}), 201)
    sleeps = []
    policy = RetryPolicy(max_retry_after=30)
    request_with_retries(send, policy=policy, sleep=sleeps.append)
    assert sleeps == [2.0, 30.0]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=7), usegmt=True), now=now)
    assert retry_after_seconds("7", now=now) == 7.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_a_server_that_stays_unavailable_leaves_the_capture_buffered(tmp_path):
    api = StationApi()
    api.script = [(503, {"Retry-After": "0"}, b"{}")] * 4
    with Buffer(tmp_path / "b.sqlite3") as buffer:
        client = StationClient(
            "http://s.test", "t", buffer=buffer, transport=api.transport(), sleep=lambda s: None
        )
        result = client.capture(jpeg(), line="L1")
        assert result.status == "buffered" and result.action == "hold"
        assert len(api.keys_posted()) == 4 and len(set(api.keys_posted())) == 1
        assert buffer.get(result.key).state == QUEUED


def cli_capture(server_url: str, tmp_path, *extra: str) -> subprocess.CompletedProcess:
    image = tmp_path / "phone.jpg"
    image.write_bytes(jpeg())
    return subprocess.run(
        [sys.executable, "-m", "station_client", "capture", str(image), "--url", server_url,
         "--token", "t", "--line", "L1", "--buffer", str(tmp_path / "b.sqlite3"), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_cli_waits_as_long_as_retry_after_says_then_gets_its_answer(tmp_path):
    api = StationApi()
    api.script = [
        (503, {"Retry-After": "1", "Content-Type": "application/json"},
         b'{"error": {"code": "database_unavailable", "message": "later"}}'),
    ]  # fmt: skip
    with LoopbackServer(api) as server:
        done = cli_capture(server.url, tmp_path, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "decided"
    posts = [s for s in api.seen if s.path == "/api/v1/captures"]
    assert len(posts) == 2 and len(set(api.keys_posted())) == 1
    # The second try came at least the second the server asked for after the first.
    assert posts[1].at - posts[0].at >= 0.95


def test_the_cli_does_not_retry_a_bad_image_and_says_why(tmp_path):
    api = StationApi()
    api.script = [
        (415, {"Content-Type": "application/json"},
         b'{"error": {"code": "not_image", "message": "The file is not a JPEG or PNG image."}}'),
    ]  # fmt: skip
    with LoopbackServer(api) as server:
        done = cli_capture(server.url, tmp_path, "--json")
    assert done.returncode == 2
    assert "The file is not a JPEG or PNG image." in done.stderr
    assert json.loads(done.stdout)["error"]["code"] == "not_image"
    assert len(api.seen) == 1
    with Buffer(tmp_path / "b.sqlite3") as buffer:
        assert buffer.count(REJECTED) == 1 and buffer.count(QUEUED) == 0


def test_a_refused_token_keeps_the_capture_for_later(tmp_path):
    api = StationApi()
    api.script = [
        (401, {"Content-Type": "application/json"},
         b'{"error": {"code": "not_authenticated", "message": "Unknown station token."}}'),
    ]  # fmt: skip
    started = time.monotonic()
    with LoopbackServer(api) as server:
        done = cli_capture(server.url, tmp_path)
    assert time.monotonic() - started < 30
    assert done.returncode == 3 and "Unknown station token." in done.stderr
    with Buffer(tmp_path / "b.sqlite3") as buffer:
        assert buffer.count(QUEUED) == 1
