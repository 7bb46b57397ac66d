"""A real MQTT broker for the bridge's tests: Debian's mosquitto on a free loopback port with a
config of its own (never the machine's broker on 1883), and a subscriber that collects what is
published."""

from __future__ import annotations

import json
import queue
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.integration.conftest import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Mosquitto:
    """`listener PORT 127.0.0.1`, anonymous; started (again, on the same port) and stopped."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.config = folder / "mosquitto.conf"
        self.config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n")
        self.log = folder / "mosquitto.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        if not Path(MOSQUITTO).exists():
            pytest.fail(f"mosquitto is not installed ({MOSQUITTO}); apt-get install mosquitto")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"mosquitto exited:\n{self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"mosquitto does not listen on {self.port}:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


class Subscriber:
    """A PLC's side: subscribes to `topics` (wildcards allowed) and collects every message."""

    def __init__(self, port: int, *topics: str) -> None:
        self.messages: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.seen: list[tuple[str, bytes, bool]] = []
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"plc-{uuid.uuid4().hex}")
        subscribed = threading.Event()

        def connected(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            client.subscribe([(topic, 1) for topic in topics])

        self.client.on_connect = connected
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload, m.retain))
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert subscribed.wait(10), "the test's subscriber never subscribed"

    def publish(self, topic: str, payload: dict[str, Any] | bytes) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(topic, data, qos=1).wait_for_publish(timeout=5)

    def next(
        self, topic: str, timeout: float = 10.0, payload: bytes | None = None, **match: Any
    ) -> tuple[bytes, bool]:
        """The next message on `topic` (this `payload`, or whose JSON has the `match` fields,
        if given) and its retain flag."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                got = self.messages.get(timeout=remaining)
            except queue.Empty:
                break
            self.seen.append(got)
            if got[0] != topic:
                continue
            if payload is not None and got[1] != payload:
                continue
            if match:
                body = json.loads(got[1])
                if any(body.get(name) != value for name, value in match.items()):
                    continue
            return got[1], got[2]
        pytest.fail(f"nothing on {topic} matching {match} in {timeout} s; saw {self.seen}")

    def next_json(self, topic: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        return json.loads(self.next(topic, timeout, **match)[0])

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
