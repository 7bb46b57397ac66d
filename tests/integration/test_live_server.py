"""The station path on a real ASGI server (uvicorn subprocess) with real websocket clients."""

import asyncio
import json
import threading
import time
import uuid

import httpx
import pytest
import websockets

from tests.factories import ProductionLineFactory, UserFactory, image_bytes, station_with_token
from tests.integration.conftest import child_env, free_port, start, stop, wait_for_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def live_server_url(postgres, tmp_path):
    port = free_port()
    log = tmp_path / "uvicorn.log"
    # A prefix of our own: other test runs may share the Redis channel layer.
    env = child_env(CHANNELS_PREFIX=f"test-{uuid.uuid4().hex[:8]}")
    process = start(
        ["uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port)],
        env,
        log,
    )
    try:
        wait_for_port(port, process, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def login(base: str, username: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    client.get("/accounts/login/")
    response = client.post(
        "/accounts/login/",
        data={
            "username": username,
            "password": "pw-for-tests",
            "csrfmiddlewaretoken": client.cookies["csrftoken"],
        },
    )
    assert response.status_code == 302, response.text
    client.headers["X-CSRFToken"] = client.cookies["csrftoken"]
    return client


def test_capture_long_poll_and_websockets_on_a_live_server(live_server_url):
    line = ProductionLineFactory(code="L1", automation_level="partial")  # no model: humans decide
    station = station_with_token(line=line, name="S1")
    inspector = UserFactory(username="ines", roles=["inspector"], lines=[line])
    ws_base = live_server_url.replace("http://", "ws://")
    browser = login(live_server_url, inspector.username)
    station_http = httpx.Client(
        base_url=live_server_url, headers={"Authorization": f"Token {station.token}"}, timeout=60
    )

    async def scenario():
        station_socket = await websockets.connect(
            f"{ws_base}/ws/stations/{station.pk}/",
            additional_headers={"Authorization": f"Token {station.token}"},
        )
        line_socket = await websockets.connect(
            f"{ws_base}/ws/lines/L1/",
            additional_headers={
                "Cookie": f"sessionid={browser.cookies['sessionid']}",
                "Origin": live_server_url,
            },
        )
        assert json.loads(await station_socket.recv())["type"] == "hello"
        assert json.loads(await line_socket.recv())["type"] == "hello"

        response = await asyncio.to_thread(
            station_http.post,
            "/api/v1/captures",
            data={"line": "L1", "idempotency_key": "live-1"},
            files={"image": ("p.jpg", image_bytes(), "image/jpeg")},
        )
        assert response.status_code == 201, response.text
        capture = response.json()
        assert (capture["status"], capture["verdict"]) == ("pending", None)

        # The inspectors' feed shows the new capture.
        event = json.loads(await asyncio.wait_for(line_socket.recv(), 10))
        assert (event["type"], event["capture"]["id"]) == ("capture", capture["id"])

        # The station long-polls while an inspector decides.
        answer = {}

        def long_poll():
            answer["response"] = station_http.get(f"/api/v1/captures/{capture['id']}?wait=30")

        poller = threading.Thread(target=long_poll)
        poller.start()
        await asyncio.sleep(1.0)
        verdict = await asyncio.to_thread(
            browser.post, f"/api/v1/captures/{capture['id']}/verdict", json={"verdict": "fail"}
        )
        assert verdict.status_code == 200, verdict.text
        await asyncio.to_thread(poller.join, 30)
        polled = answer["response"].json()
        assert (polled["status"], polled["verdict"], polled["decided_by"]) == (
            "decided",
            "fail",
            "human",
        )
        assert answer["response"].elapsed.total_seconds() < 10

        pushed = json.loads(await asyncio.wait_for(station_socket.recv(), 10))
        assert (pushed["type"], pushed["capture"]["verdict"]) == ("decision", "fail")
        decided = json.loads(await asyncio.wait_for(line_socket.recv(), 10))
        assert (decided["type"], decided["capture"]["decided_by"]) == ("decision", "human")
        await station_socket.close()
        await line_socket.close()

    asyncio.run(scenario())
    station_http.close()
    browser.close()


def test_bad_requests_on_a_live_server_are_json_4xx(live_server_url):
    station = station_with_token(line=ProductionLineFactory(code="L1"), name="S1")
    with httpx.Client(base_url=live_server_url, timeout=30) as client:
        response = client.post("/api/v1/captures", data={"line": "L1"})
        assert (response.status_code, response.json()["error"]["code"]) == (
            401,
            "not_authenticated",
        )
        client.headers["Authorization"] = f"Token {station.token}"
        response = client.post(
            "/api/v1/captures",
            data={"line": "L1", "idempotency_key": "x"},
            files={"image": ("p.jpg", b"\xff\xd8\xff" + b"\0" * 100, "image/jpeg")},
        )
        assert response.status_code in (400, 415)
        assert response.json()["error"]["code"] in ("truncated", "not_image")
        assert client.get("/api/v1/does-not-exist").json()["error"]["code"] == "not_found"
        schema = client.get("/api/schema/")
        assert schema.status_code == 200 and b"/api/v1/captures" in schema.content


def test_a_websocket_with_a_bad_token_is_closed(live_server_url):
    station = station_with_token(line=ProductionLineFactory(code="L1"), name="S1")
    ws_base = live_server_url.replace("http://", "ws://")

    async def scenario():
        socket = await websockets.connect(
            f"{ws_base}/ws/stations/{station.pk}/",
            additional_headers={"Authorization": "Token nope"},
        )
        error = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert (error["type"], error["code"]) == ("error", 4401)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 10)
        assert closed.value.rcvd.code == 4401

    asyncio.run(scenario())


def test_simulate_line_posts_like_a_station(live_server_url):
    import subprocess
    import sys

    from inspection.models import Capture
    from tests.integration.conftest import ROOT

    station = station_with_token(line=ProductionLineFactory(code="L1"), name="S1")
    result = subprocess.run(
        [sys.executable, "manage.py", "simulate_line", "--line", "L1", "--token", station.token,
         "--url", live_server_url, "--rate", "20/s", "--count", "3", "--size", "320x180",
         "--lighting-shift-after", "0.1s"],
        cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("pending (a human decides)") == 3
    assert "ms" in result.stdout
    assert Capture.objects.filter(station=station).count() == 3


def test_reuseport_launcher_serves_from_two_workers(postgres, tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    process = start(["config.serve", "--port", str(port), "--workers", "2"], child_env(), log)
    try:
        wait_for_port(port, process, log)
        for _ in range(10):  # a new connection each time
            # Generous: on a busy machine a connection may reach the worker still starting
            # (SO_REUSEPORT hands it to whichever listens), which answers once it is up.
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=90) as client:
                assert client.get("/accounts/login/").status_code == 200
        deadline = time.monotonic() + 30
        while log.read_text().count("Started server process") < 2:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    finally:
        stop(process)
    # No access log unless asked for (`--access-log`): Django's logging settings must not turn
    # uvicorn's back on (each line cost the station ~0.15 ms before its answer's body).
    assert "GET /accounts/login/" not in log.read_text()
