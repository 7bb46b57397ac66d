"""Limits on a real uvicorn: bodies refused before they are read (announced or streamed), and a
long-polling station answered from the database while the channel layer (Redis) is down."""

import json
import socket
import threading
import time
import uuid

import httpx
import pytest

from inspection import services
from tests.factories import (
    DecisionFactory,
    ProductionLineFactory,
    UserFactory,
    image_bytes,
    station_with_token,
)
from tests.integration.conftest import child_env, free_port, start, stop, wait_for_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Small enough that streaming past it takes a moment, not minutes.
REQUEST_MAX_BYTES = 256 * 1024


def uvicorn(tmp_path, **env: str):
    port = free_port()
    log = tmp_path / f"uvicorn-{port}.log"
    process = start(
        ["uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port)],
        child_env(CHANNELS_PREFIX=f"test-{uuid.uuid4().hex[:8]}", **env),
        log,
    )
    wait_for_port(port, process, log)
    return process, port


@pytest.fixture
def server(postgres, tmp_path):
    process, port = uvicorn(tmp_path, REQUEST_MAX_BYTES=str(REQUEST_MAX_BYTES))
    try:
        yield port
    finally:
        stop(process)


def _parse(data: bytes) -> tuple[int, dict, bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = dict(line.decode().lower().split(": ", 1) for line in lines[1:] if b": " in line)
    return int(lines[0].split()[1]), headers, body


def read_response(sock: socket.socket, timeout: float) -> tuple[int, dict, bytes]:
    """Status, headers and body of the HTTP/1.1 answer on `sock`."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
        if b"\r\n\r\n" in data:
            _, headers, body = _parse(data)
            if len(body) >= int(headers.get("content-length", 1 << 30)):
                break
    return _parse(data)


def test_a_body_announced_as_300_mb_is_refused_at_once_without_being_sent(server):
    station = station_with_token(line=ProductionLineFactory(code="L1"), name="S1")
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/captures HTTP/1.1\r\n"
            + f"Host: 127.0.0.1:{server}\r\n".encode()
            + f"Authorization: Token {station.token}\r\n".encode()
            + b"Content-Type: multipart/form-data; boundary=xyz\r\n"
            + f"Content-Length: {300 * 1024 * 1024}\r\n\r\n".encode()
            + b"--xyz\r\n"  # and nothing more: the 300 MB never come
        )
        status, headers, body = read_response(sock, timeout=10)
    assert time.monotonic() - started < 5  # at once: nothing waits for the 300 MB
    assert status == 413
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == "too_large"
    assert str(300 * 1024 * 1024) in error["message"]


def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(server):
    user = UserFactory(username="sam", roles=["supervisor"])
    assert user.pk
    chunk = b"x" * 65536
    sent = 0
    with socket.create_connection(("127.0.0.1", server), timeout=10) as sock:
        sock.sendall(
            b"POST /accounts/login/ HTTP/1.1\r\n"
            + f"Host: 127.0.0.1:{server}\r\n".encode()
            + b"Content-Type: application/x-www-form-urlencoded\r\n"
            + b"Transfer-Encoding: chunked\r\n\r\n"
        )
        planned = 200 * 1024 * 1024
        try:
            while sent < planned:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                sock.settimeout(0.001)
                try:
                    if sock.recv(1, socket.MSG_PEEK):
                        break  # the server has answered
                except (BlockingIOError, TimeoutError):
                    pass
                sock.settimeout(10)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it answered and closed while we were still sending
        status, _, body = read_response(sock, timeout=10)
    assert status == 413
    assert json.loads(body)["error"]["code"] == "too_large"
    assert sent < 50 * 1024 * 1024  # refused long before the 200 MB were sent


def test_a_capture_streamed_in_pieces_under_the_limit_still_goes_through(server):
    station = station_with_token(line=ProductionLineFactory(code="L1"), name="S1")
    boundary = "b0undary"
    image = image_bytes()
    body = (
        (
            f"--{boundary}\r\nContent-Disposition: form-data; name=line\r\n\r\nL1\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=idempotency_key\r\n\r\nc-1\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=image; filename=p.jpg\r\n"
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )

    def pieces():
        for start_at in range(0, len(body), 4096):
            yield body[start_at : start_at + 4096]

    headers = {
        "Authorization": f"Token {station.token}",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(len(body)),
    }
    with httpx.Client(base_url=f"http://127.0.0.1:{server}", timeout=30) as client:
        streamed = client.post("/api/v1/captures", content=pieces(), headers=headers)
        assert streamed.status_code == 201, streamed.text
        again = client.post("/api/v1/captures", content=body, headers=headers)
        assert again.status_code == 200, again.text  # the same key and image: the first answer
        assert again.json()["id"] == streamed.json()["id"]


def test_long_poll_falls_back_to_the_database_when_redis_is_down(postgres, tmp_path):
    closed_port = free_port()  # nothing listens there: connection refused
    process, port = uvicorn(tmp_path, REDIS_URL=f"redis://127.0.0.1:{closed_port}/0")
    try:
        line = ProductionLineFactory(code="L1", automation_level="manual")
        station = station_with_token(line=line, name="S1")
        decision = DecisionFactory(capture__station=station)
        inspector = UserFactory(roles=["inspector"])
        url = f"http://127.0.0.1:{port}/api/v1/captures/{decision.capture_id}"
        headers = {"Authorization": f"Token {station.token}"}

        answer = {}

        def long_poll():
            answer["response"] = httpx.get(url + "?wait=30", headers=headers, timeout=60)

        poller = threading.Thread(target=long_poll)
        started = time.monotonic()
        poller.start()
        time.sleep(1.5)
        services.verdict_record(capture_id=decision.capture_id, user=inspector, verdict="pass")
        poller.join(60)
        response = answer["response"]
        assert response.status_code == 200, response.text
        assert time.monotonic() - started < 10
        assert (response.json()["status"], response.json()["verdict"]) == ("decided", "pass")
        # And a poll that times out while Redis is down is a 200 pending, not a 500.
        other = DecisionFactory(capture__station=station)
        response = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/captures/{other.capture_id}?wait=2",
            headers=headers,
            timeout=30,
        )
        assert (response.status_code, response.json()["status"]) == (200, "pending")
    finally:
        stop(process)
