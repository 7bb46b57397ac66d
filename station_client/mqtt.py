"""`mqtt`: a bridge between a PLC on an MQTT broker and the platform, for lines whose control
talks MQTT rather than Python (README, "Station client", MQTT bridge, for the topics).

The PLC publishes a trigger; the bridge takes the image it names (or the newest one in the
camera's folder not taken yet), posts it through StationClient (buffer first, idempotency key,
retries) and publishes the verdict: at once when the capture is decided or buffered, or, for a
pending capture, when the verdict arrives on the station websocket (the capture is also read
again now and then, for a verdict made while the websocket was down). Corrections are published
too. The bridge's own state is a retained topic whose last will says `offline`, so a PLC sees a
dead bridge. paho reconnects to the broker on its own, with backoff.

The network loop (paho's thread) only queues triggers; they are handled one at a time on the
thread that runs the bridge, so a slow server never stops the broker connection.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from station_client.buffer import QUEUED
from station_client.client import CaptureRejected, CaptureResult, StationClient
from station_client.watch import StationListener, is_candidate

logger = logging.getLogger("station_client")

DEFAULT_PORT = 1883
QOS = 1
ONLINE, OFFLINE = "online", "offline"
REMEMBERED = 1000  # captures whose trigger is remembered (for corrections), and early verdicts

Emit = Callable[[dict[str, Any]], None]


def broker_address(value: str) -> tuple[str, int]:
    """HOST[:PORT] (an IPv6 host in brackets: [::1]:1883) as (host, port)."""
    host, port = value, DEFAULT_PORT
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
    elif value.count(":") == 1:
        host, _, text = value.partition(":")
        port = int(text)
    if not host or not 0 < port < 65536:
        raise ValueError(f"not a broker address: {value!r} (HOST[:PORT])")
    return host, port


@dataclass(frozen=True)
class Topics:
    trigger: str  # subscribed: the PLC asks for an inspection
    verdict: str  # published: the answer to each trigger
    correction: str  # published: a verdict changed after the fact
    bridge: str  # retained: online / offline (the last will)

    @classmethod
    def for_line(cls, line: str, prefix: str = "inspection") -> Topics:
        base = f"{prefix.strip('/')}/{line}"
        return cls(f"{base}/trigger", f"{base}/verdict", f"{base}/correction", f"{base}/bridge")


@dataclass
class Trigger:
    """What the bridge remembers of a trigger until its capture is decided."""

    trigger_id: Any
    image: str | None
    key: str | None = None
    read_at: float = 0.0


class MqttBridge:
    def __init__(
        self,
        client: StationClient,
        *,
        line: str,
        folder: str | Path,
        broker: str,
        topic_prefix: str = "inspection",
        username: str | None = None,
        password: str | None = None,
        emit: Emit | None = None,
        retry_every: float = 5.0,
        reconnect_delay: tuple[int, int] = (1, 30),
        keepalive: int = 30,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client, self.line, self.folder = client, line, Path(folder)
        self.topics = Topics.for_line(line, topic_prefix)
        self.emit = emit or (lambda event: None)
        self.retry_every, self.clock, self.keepalive = retry_every, clock, keepalive
        self.host, self.port = broker_address(broker)
        self.connected = threading.Event()
        self.listener: StationListener | None = None
        self._triggers: queue.Queue[bytes] = queue.Queue()
        self._lock = threading.Lock()
        self._pending: dict[str, Trigger] = {}  # capture id -> its trigger, until decided
        self._known: OrderedDict[str, Trigger] = OrderedDict()  # recent captures' triggers
        self._early: OrderedDict[str, dict[str, Any]] = OrderedDict()  # verdicts before answers
        self._offline_until = 0.0
        client.on_decision = self._decided
        client.on_correction = self._corrected

        # A fresh client id and a clean session: two bridges never take each other's place, and
        # triggers sent while the bridge was away are not replayed to a phone long gone.
        self.mqtt = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"station-bridge-{line}-{uuid.uuid4().hex[:8]}",
            clean_session=True,
        )
        if username:
            self.mqtt.username_pw_set(username, password)
        self.mqtt.will_set(self.topics.bridge, OFFLINE, qos=QOS, retain=True)
        self.mqtt.reconnect_delay_set(*reconnect_delay)
        self.mqtt.on_connect = self._on_connect
        self.mqtt.on_subscribe = self._on_subscribe
        self.mqtt.on_disconnect = self._on_disconnect
        self.mqtt.on_message = self._on_message

    # --- the broker (paho's network thread) -------------------------------------------------

    def _on_connect(self, mqtt: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            logger.warning("MQTT broker %s:%s refused the bridge: %s", self.host, self.port, reason)
            return
        mqtt.subscribe(self.topics.trigger, qos=QOS)

    def _on_subscribe(self, mqtt: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        # `online` once triggers are heard, not before (a trigger sent earlier would be lost).
        if any(code.is_failure for code in codes):
            logger.warning("MQTT broker refused the subscription to %s", self.topics.trigger)
            return
        mqtt.publish(self.topics.bridge, ONLINE, qos=QOS, retain=True)
        self.connected.set()
        logger.warning("MQTT broker %s:%s connected; %s", self.host, self.port, self.topics.trigger)
        self.emit({"event": "bridge", "state": ONLINE, "broker": f"{self.host}:{self.port}"})

    def _on_disconnect(self, mqtt: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected.clear()
        logger.warning("MQTT broker connection lost (%s); reconnecting", reason)

    def _on_message(self, mqtt: Any, userdata: Any, message: Any) -> None:
        if message.topic == self.topics.trigger:
            self._triggers.put(message.payload)

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        """QoS 1; while the broker is away paho keeps the message and sends it on reconnect."""
        self.mqtt.publish(topic, json.dumps(payload), qos=QOS)

    # --- running ----------------------------------------------------------------------------

    def start(self) -> None:
        self.client.line_refresh(self.line)  # the outage policy, should the server go down
        self.mqtt.connect_async(self.host, self.port, keepalive=self.keepalive)
        self.mqtt.loop_start()  # connects, and reconnects with backoff, on its own thread

    def run(self, *, poll_interval: float = 0.5) -> None:
        self.client.buffer.prune()
        self.start()
        try:
            while True:
                self.step(timeout=poll_interval)
        finally:
            self.stop()

    def step(self, *, timeout: float = 0.5) -> None:
        """Answer the next trigger (waiting up to `timeout` for one), then keep up with the
        server: send the buffer when it answers again, read pending captures again."""
        try:
            payload = self._triggers.get(timeout=timeout)
        except queue.Empty:
            payload = None
        if payload is not None:
            try:
                self.trigger_handle(payload)
            except Exception as exc:  # one bad trigger must not take the bridge down
                logger.exception("a trigger could not be handled")
                self._answer_error(None, None, f"the bridge could not handle the trigger: {exc}")
        if self.offline:
            return
        if self.client.buffer.count(QUEUED):
            result = self.client.flush()
            self.emit({"event": "flush", **result.to_dict()})
            if result.left:
                self._offline_until = self.clock() + self.retry_every
                return
        self.client.line_refresh(self.line)
        self._listen()
        self._poll_pending()

    def stop(self) -> None:
        """A clean stop: `offline` is published (the broker sends the will only for a lost
        connection), then the connection closed."""
        if self.connected.is_set():
            info = self.mqtt.publish(self.topics.bridge, OFFLINE, qos=QOS, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):  # lost meanwhile: the will says it
                info.wait_for_publish(timeout=2.0)
        self.mqtt.disconnect()
        self.mqtt.loop_stop()
        if self.listener is not None:
            self.listener.stop()
            self.listener = None

    @property
    def offline(self) -> bool:
        return self.clock() < self._offline_until

    # --- triggers ---------------------------------------------------------------------------

    def trigger_handle(self, payload: bytes) -> None:
        try:
            request = json.loads(payload) if payload.strip() else {}
        except ValueError:
            request = None
        if not isinstance(request, dict):
            self._answer_error(None, None, "the trigger must be empty or a JSON object")
            return
        trigger = Trigger(request.get("trigger_id"), None)
        name = request.get("image")
        if name is not None and not isinstance(name, str):
            self._answer_error(trigger.trigger_id, None, "image must be a file name")
            return
        picked = self._image_named(name) if name else self._image_newest()
        if isinstance(picked, str):
            self._answer_error(trigger.trigger_id, name, picked)
            return
        path, size, mtime_ns = picked
        trigger.image = path.name
        try:
            data = path.read_bytes()
        except OSError as exc:
            self._answer_error(trigger.trigger_id, path.name, f"cannot read the image: {exc}")
            return
        self._capture(trigger, data, (str(path), size, mtime_ns))

    def _image_named(self, name: str) -> tuple[Path, int, int] | str:
        if Path(name).name != name or name in (".", ".."):
            return "image must be a file name in the camera's folder"
        path = self.folder / name
        try:
            stat = path.stat()
        except OSError:
            return f"no image {name} in the camera's folder"
        return path, stat.st_size, stat.st_mtime_ns

    def _image_newest(self) -> tuple[Path, int, int] | str:
        """The newest image file of the folder not taken yet (by a trigger or `watch`)."""
        best: tuple[int, str, Path, int] | None = None
        try:
            entries = list(os.scandir(self.folder))
        except OSError as exc:
            return f"the camera's folder cannot be read: {exc.strerror or exc}"
        for entry in entries:
            if not is_candidate(entry.name):
                continue
            try:
                if not entry.is_file():
                    continue
                stat = entry.stat()
            except OSError:
                continue
            if stat.st_size == 0 or self.client.buffer.file_taken(
                entry.path, size=stat.st_size, mtime_ns=stat.st_mtime_ns
            ):
                continue
            candidate = (stat.st_mtime_ns, entry.name, Path(entry.path), stat.st_size)
            if best is None or candidate[:2] > best[:2]:
                best = candidate
        if best is None:
            return "no new image in the camera's folder"
        return best[2], best[3], best[0]

    def _capture(self, trigger: Trigger, data: bytes, watched: tuple[str, int, int]) -> None:
        name = Path(watched[0]).name
        metadata = {"trigger_id": trigger.trigger_id} if trigger.trigger_id is not None else None
        try:
            if self.offline:  # do not make the PLC wait on retries while the server is down
                record = self.client.buffer_add(
                    data, line=self.line, filename=name, metadata=metadata, watched=watched
                )
                result = self.client.outage_result(record)
            else:
                result = self.client.capture(
                    data, line=self.line, filename=name, metadata=metadata, watched=watched
                )
        except CaptureRejected as exc:
            answer = {"trigger_id": trigger.trigger_id, "image": name, **exc.to_dict()}
            self.publish(self.topics.verdict, answer)
            self.emit({"event": "verdict", **answer})
            return
        trigger.key = result.key
        self._result(trigger, result)

    def _result(self, trigger: Trigger, result: CaptureResult) -> None:
        if result.status == "buffered":
            self._offline_until = self.clock() + self.retry_every
            self._verdict_publish(
                {
                    "status": "buffered",
                    "action": result.action,
                    "policy": result.policy,
                    "edge_verdict": result.edge_verdict,
                },
                trigger,
            )
            return
        capture = result.answer or result.to_dict()
        with self._lock:
            self._remember(str(result.id), trigger)
            early = self._early.pop(str(result.id), None)
            if result.status == "pending" and early is None:
                trigger.read_at = self.clock()
                self._pending[str(result.id)] = trigger
        if result.status == "pending" and early is None:
            self.emit({"event": "pending", "trigger_id": trigger.trigger_id, "id": result.id})
            return
        self._verdict_publish(early or capture, trigger)

    def _remember(self, capture_id: str, trigger: Trigger) -> None:
        self._known[capture_id] = trigger
        while len(self._known) > REMEMBERED:
            self._known.popitem(last=False)

    def _verdict_publish(self, capture: dict[str, Any], trigger: Trigger) -> None:
        payload = {
            "trigger_id": trigger.trigger_id,
            "id": capture.get("id"),
            "status": capture.get("status"),
            "verdict": capture.get("verdict"),
            "decided_by": capture.get("decided_by"),
            "key": trigger.key,
            "image": trigger.image,
        }
        if capture.get("status") == "buffered":
            payload |= {k: capture[k] for k in ("action", "policy", "edge_verdict")}
        self.publish(self.topics.verdict, payload)
        self.emit({"event": "verdict", **payload})

    def _answer_error(self, trigger_id: Any, image: str | None, message: str) -> None:
        logger.warning("trigger %s not answered with a capture: %s", trigger_id, message)
        payload = {"trigger_id": trigger_id, "image": image, "status": "error", "error": message}
        self.publish(self.topics.verdict, payload)
        self.emit({"event": "verdict", **payload})

    # --- verdicts that come later -----------------------------------------------------------

    def _decided(self, capture: dict[str, Any]) -> None:
        """A decision from the station websocket (its thread) or from reading a capture."""
        if capture.get("status") != "decided":
            return
        capture_id = str(capture.get("id"))
        with self._lock:
            trigger = self._pending.pop(capture_id, None)
            if trigger is None and capture_id not in self._known:
                # Decided before the capture's answer came back: kept for _result.
                self._early[capture_id] = capture
                while len(self._early) > REMEMBERED:
                    self._early.popitem(last=False)
        if trigger is not None:
            self._verdict_publish(capture, trigger)

    def _corrected(self, capture: dict[str, Any]) -> None:
        with self._lock:
            trigger = self._known.get(str(capture.get("id")))
        payload: dict[str, Any] = {"type": "correction", "capture": capture}
        if trigger is not None:
            payload |= {"trigger_id": trigger.trigger_id, "image": trigger.image}
        self.publish(self.topics.correction, payload)
        self.emit({"event": "correction", **payload})

    def _listen(self) -> None:
        station = self.client.station_id()
        if station is None or (self.listener is not None and self.listener.station_id == station):
            return
        if self.listener is not None:
            self.listener.stop()
        self.listener = StationListener(self.client, station)
        self.listener.start()

    def _poll_pending(self) -> None:
        """Pending captures read again every retry_every seconds (three times less often with
        the websocket open): a verdict made while it reconnected is only in the database."""
        connected = self.listener is not None and self.listener.connected.is_set()
        every, now = self.retry_every * (3 if connected else 1), self.clock()
        with self._lock:
            due = [cid for cid, t in self._pending.items() if now - t.read_at >= every][:50]
            for capture_id in due:
                self._pending[capture_id].read_at = now
        for capture_id in due:
            capture = self.client.capture_get(capture_id)
            if capture is not None:
                self._decided(capture)
