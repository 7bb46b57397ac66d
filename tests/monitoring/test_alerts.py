"""Alerts told three ways: a webhook to a real local HTTP receiver (signed, retried, logged),
email through Django's backend, and live to browsers over the monitoring websocket."""

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from django.contrib.auth.models import AnonymousUser
from django.core import mail

from config.routing import websocket_urlpatterns
from monitoring import services
from monitoring.models import Alert, DeliveryStatus, WebhookDelivery
from tests.factories import UserFactory
from tests.inspection.test_consumers import WebsocketCommunicator
from tests.monitoring.conftest import reference_metadata

pytestmark = pytest.mark.django_db


class Receiver:
    """A real HTTP server on loopback that records what it is sent (answering `statuses` in
    turn, then 200)."""

    def __init__(self, statuses=()):
        self.received: list[tuple[dict, bytes]] = []
        self.statuses = list(statuses)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/inspection"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def drift_until_alert(sim, **kwargs):
    for _ in range(9):  # the model's first 500 captures become the line's normal
        sim.captures(60)
        services.line_check(line=sim.line)
    for _ in range(4):
        sim.captures(60, brightness_factor=0.8)
        services.line_check(line=sim.line)
    return Alert.objects.get(signal="data_drift")


def test_an_opened_alert_reaches_the_webhook_signed_and_the_mailbox(
    simulated_line, receiver, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    sim = simulated_line(metadata=reference_metadata())
    services.rules_update(
        line=sim.line, user=None, webhook_url=receiver.url, webhook_secret="line-secret",
        email_recipients=["quality@example.com"],
    )  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        alert = drift_until_alert(sim)
    headers, body = receiver.received[0]
    expected = "sha256=" + hmac.new(b"line-secret", body, hashlib.sha256).hexdigest()
    assert headers["X-Inspection-Signature"] == expected
    payload = json.loads(body)
    assert (payload["event"], payload["line"], payload["signal"]) == ("opened", "L1", "data_drift")
    assert payload["id"] == alert.pk and payload["url"] == "/monitor/L1/"
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("delivered", 1, 200)
    [message] = mail.outbox
    assert message.to == ["quality@example.com"] and "data_drift opened" in message.subject
    assert "/monitor/L1/" in message.body


def test_a_failing_receiver_is_retried_and_each_attempt_logged(simulated_line):
    flaky = Receiver(statuses=[503, 500])
    try:
        sim = simulated_line(metadata=reference_metadata())
        services.rules_update(line=sim.line, user=None, webhook_url=flaky.url)
        alert = Alert.objects.create(
            line=sim.line, signal="yield", severity="drifted", opened_at=sim.clock
        )
        delivery = WebhookDelivery.objects.create(
            alert=alert, event="opened", url=flaky.url, payload={"id": alert.pk}
        )
        for _ in range(2):
            with pytest.raises(services.alerts.WebhookFailed):
                services.webhook_deliver(delivery_id=delivery.pk)
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts, delivery.last_error) == (
            "pending",
            2,
            "HTTP 500",
        )
        services.webhook_deliver(delivery_id=delivery.pk)
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 3)
        services.webhook_deliver(delivery_id=delivery.pk)  # delivered once: not sent again
        assert len(flaky.received) == 3
        assert "X-Inspection-Signature" not in flaky.received[0][0]  # no secret, no signature
    finally:
        flaky.close()


def test_retries_exhausted_mark_the_delivery_failed(simulated_line):
    sim = simulated_line()
    alert = Alert.objects.create(
        line=sim.line, signal="yield", severity="drifted", opened_at=sim.clock
    )
    delivery = WebhookDelivery.objects.create(
        alert=alert, event="opened", url="http://127.0.0.1:9/nothing-listens", payload={}
    )
    services.webhook_deliver(delivery_id=delivery.pk, final_attempt=True)
    delivery.refresh_from_db()
    assert delivery.status == "failed" and "ConnectError" in delivery.last_error


def _socket(user):
    # Browser feeds check the Origin (config/routing.py): send the page's own.
    socket = WebsocketCommunicator(
        URLRouter(websocket_urlpatterns),
        "/ws/monitoring/",
        headers=[(b"origin", b"http://localhost"), (b"host", b"localhost")],
    )
    socket.scope["user"] = user or AnonymousUser()
    return socket


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("roles", "code"), [(None, 4401), (["labeler"], 4403)])
def test_the_monitoring_websocket_refuses_who_may_not_see_it(roles, code):
    socket = _socket(UserFactory(roles=roles) if roles else None)

    async def scenario():
        await socket.connect()
        assert (await socket.receive_output(timeout=5))["code"] == code

    async_to_sync(scenario)()


@pytest.mark.django_db(transaction=True)
def test_supervisors_hear_alerts_live_as_the_job_opens_them(simulated_line):
    sim = simulated_line(metadata=reference_metadata())
    socket = _socket(UserFactory(roles=["supervisor"]))

    async def scenario():
        assert (await socket.connect())[0]
        assert (await socket.receive_json_from())["type"] == "hello"
        await database_sync_to_async(drift_until_alert)(sim)
        message = await socket.receive_json_from(timeout=5)
        assert message["type"] == "alert"
        assert (message["alert"]["event"], message["alert"]["signal"]) == ("opened", "data_drift")
        await socket.disconnect()

    async_to_sync(scenario)()
