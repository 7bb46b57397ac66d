"""Websocket consumers with the in-memory channel layer (the live-server test is integration)."""

import json
from urllib.parse import urlparse

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.routing import URLRouter

from config.routing import websocket_urlpatterns
from inspection import services
from tests.factories import DecisionFactory, ProductionLineFactory, UserFactory, station_with_token

pytestmark = pytest.mark.django_db(transaction=True)


# What config.asgi serves on websockets (importing config.asgi runs the production check).
application = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))


class WebsocketCommunicator(ApplicationCommunicator):
    """A websocket client for an ASGI app in the same process (channels.testing needs daphne)."""

    def __init__(self, app, path: str, headers=None):
        parsed = urlparse(path)
        scope = {
            "type": "websocket",
            "path": parsed.path,
            "query_string": parsed.query.encode(),
            "headers": headers or [],
            "subprotocols": [],
        }
        super().__init__(app, scope)

    async def connect(self, timeout: float = 5):
        await self.send_input({"type": "websocket.connect"})
        response = await self.receive_output(timeout)
        return (response["type"] == "websocket.accept", response.get("code"))

    async def receive_json_from(self, timeout: float = 5):
        response = await self.receive_output(timeout)
        assert response["type"] == "websocket.send", response
        return json.loads(response["text"])

    async def send_json_to(self, content) -> None:
        await self.send_input({"type": "websocket.receive", "text": json.dumps(content)})

    async def disconnect(self, code: int = 1000, timeout: float = 5):
        await self.send_input({"type": "websocket.disconnect", "code": code})
        await self.wait(timeout)


def run(scenario):
    return async_to_sync(scenario)()


def test_station_socket_gets_its_verdict_when_a_human_decides():
    station = station_with_token(line=ProductionLineFactory(code="L1"))
    decision = DecisionFactory(capture__station=station)
    inspector = UserFactory(roles=["inspector"])

    async def scenario():
        # A browser cannot set headers on a websocket: the token comes as the first message.
        socket = WebsocketCommunicator(application, f"/ws/stations/{station.pk}/")
        connected, _ = await socket.connect()
        assert connected
        await socket.send_json_to({"type": "auth", "token": station.token})
        assert (await socket.receive_json_from())["type"] == "hello"
        await database_sync_to_async(services.verdict_record)(
            capture_id=decision.capture_id, user=inspector, verdict="fail"
        )
        message = await socket.receive_json_from(timeout=5)
        assert message["type"] == "decision"
        assert (message["capture"]["id"], message["capture"]["verdict"]) == (
            str(decision.capture_id),
            "fail",
        )
        await socket.disconnect()

    run(scenario)


async def _closed_with(socket) -> tuple[int, str]:
    """The close code and the error message sent before it."""
    error = await socket.receive_json_from(timeout=5)
    closed = await socket.receive_output(timeout=5)
    return closed["code"], error["message"]


@pytest.mark.parametrize(
    ("token", "target", "code"),
    [("wrong", "own", 4401), ("right", "other", 4403), (None, "own", 4401)],
)
def test_station_socket_refuses_bad_tokens(token, target, code):
    station = station_with_token(line=ProductionLineFactory(code="L1"))
    other = station_with_token(line=station.line)
    station_id = station.pk if target == "own" else other.pk
    first = {"type": "auth", "token": station.token if token == "right" else token}

    async def scenario():
        socket = WebsocketCommunicator(application, f"/ws/stations/{station_id}/")
        await socket.connect()
        await socket.send_json_to(first if token else {"type": "subscribe"})
        closed, message = await _closed_with(socket)
        assert closed == code
        assert message

    run(scenario)


def test_station_socket_refuses_a_token_in_the_url():
    """URLs land in proxy and access logs: a token there is refused even when it is right."""
    station = station_with_token(line=ProductionLineFactory(code="L1"))

    async def scenario():
        socket = WebsocketCommunicator(
            application, f"/ws/stations/{station.pk}/?token={station.token}"
        )
        await socket.connect()
        closed, message = await _closed_with(socket)
        assert closed == 4401
        assert "URL" in message

    run(scenario)


def test_station_socket_closes_when_no_token_comes(monkeypatch):
    monkeypatch.setattr("inspection.consumers.AUTH_TIMEOUT_SECONDS", 0.2)
    station = station_with_token(line=ProductionLineFactory(code="L1"))

    async def scenario():
        socket = WebsocketCommunicator(application, f"/ws/stations/{station.pk}/")
        await socket.connect()
        closed, message = await _closed_with(socket)
        assert closed == 4401
        assert "time" in message

    run(scenario)


def test_station_socket_accepts_the_token_header():
    station = station_with_token(line=ProductionLineFactory(code="L1"))

    async def scenario():
        socket = WebsocketCommunicator(
            application,
            f"/ws/stations/{station.pk}/",
            headers=[(b"authorization", f"Token {station.token}".encode())],
        )
        assert (await socket.connect())[0]
        assert (await socket.receive_json_from())["station"] == station.pk
        await socket.disconnect()

    run(scenario)


def _line_socket(user, code="L1"):
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    if user is not None:
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return WebsocketCommunicator(
        application,
        f"/ws/lines/{code}/",
        headers=[
            (b"cookie", f"sessionid={session.session_key}".encode()),
            (b"origin", b"http://localhost"),
            (b"host", b"localhost"),
        ],
    )


def test_line_feed_shows_decisions_to_inspectors():
    station = station_with_token(line=ProductionLineFactory(code="L1"))
    decision = DecisionFactory(capture__station=station)
    inspector = UserFactory(roles=["inspector"], lines=[station.line])

    socket = _line_socket(inspector)

    async def scenario():
        assert (await socket.connect())[0]
        assert (await socket.receive_json_from())["type"] == "hello"
        await database_sync_to_async(services.verdict_record)(
            capture_id=decision.capture_id, user=inspector, verdict="pass"
        )
        message = await socket.receive_json_from(timeout=5)
        assert (message["type"], message["capture"]["verdict"]) == ("decision", "pass")
        await socket.disconnect()

    run(scenario)


@pytest.mark.parametrize(
    ("roles", "assigned", "code"),
    [
        (None, False, 4401),
        ([], False, 4403),
        (["labeler"], False, 4403),
        (["inspector"], False, 4403),  # an inspector of other lines
        (["inspector"], True, None),
        (["supervisor"], False, None),
    ],
)
def test_line_feed_needs_an_inspector_of_the_line(roles, assigned, code):
    line = ProductionLineFactory(code="L1")
    ProductionLineFactory(code="L2").inspectors.add(*([UserFactory(roles=["inspector"])]))
    user = None if roles is None else UserFactory(roles=roles, lines=[line] if assigned else [])

    socket = _line_socket(user)

    async def scenario():
        await socket.connect()
        output = await socket.receive_output(timeout=5)
        if code is None:
            assert output["type"] == "websocket.send"
            assert '"hello"' in output["text"]
        else:
            assert output["code"] == code

    run(scenario)


def test_line_feed_of_an_unknown_line():
    inspector = UserFactory(roles=["inspector"])

    socket = _line_socket(inspector, code="NOPE")

    async def scenario():
        await socket.connect()
        assert (await socket.receive_output(timeout=5))["code"] == 4404

    run(scenario)
