"""The station's side of the HTTP contract (shared/INTERFACES.md, "Station API"): post a
capture whose idempotency key is in the buffer first, wait for a pending verdict on the station
websocket (long polling when it cannot be used), send what the buffer holds, and keep the
line's settings and edge model for when the server is down.

Nothing here imports Django or the platform's code: only the HTTP and websocket contract.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import mimetypes
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from station_client.buffer import QUEUED, Buffer, BufferedCapture
from station_client.edge import EdgeModel, verdict_for
from station_client.retry import (
    RETRY_ERRORS,
    RetryPolicy,
    ServerUnavailable,
    request_with_retries,
)

logger = logging.getLogger("station_client")

OUTAGE_POLICIES = ("hold", "reject", "edge")
MAX_POLL_SECONDS = 30.0  # one long poll; the server allows up to 60
SOCKET_OPEN_SECONDS = 5.0
SOCKET_RECHECK_SECONDS = 15.0  # a silent websocket: read the capture again this often

CaptureHook = Callable[[dict[str, Any]], None]


@dataclass
class CaptureResult:
    """What became of one capture. `status`: decided, pending (a human decides; the wait ran
    out) or buffered (the server could not be reached: `policy` and `action` say what the
    phone gets meanwhile: hold, reject, or the edge model's pass/fail)."""

    status: str
    key: str
    id: str | None = None
    verdict: str | None = None
    decided_by: str | None = None
    station: int | None = None
    policy: str | None = None
    edge_verdict: str | None = None
    action: str | None = None
    answer: dict[str, Any] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = {"status": self.status, "verdict": self.verdict, "id": self.id, "key": self.key}
        if self.status == "buffered":
            out |= {"policy": self.policy, "edge_verdict": self.edge_verdict, "action": self.action}
        else:
            out |= {"decided_by": self.decided_by, "station": self.station}
        return out


class CaptureRejected(Exception):
    """The server refused the capture with a 4xx a resend cannot change. `kept`: the capture
    stays in the buffer (401/403: the station's token or line is wrong, not the image)."""

    def __init__(self, http_status: int, code: str, message: str, key: str, *, kept: bool):
        super().__init__(f"HTTP {http_status} {code}: {message}")
        self.http_status, self.code, self.message, self.key, self.kept = (
            http_status,
            code,
            message,
            key,
            kept,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": "rejected",
            "key": self.key,
            "kept_in_buffer": self.kept,
            "error": {"http_status": self.http_status, "code": self.code, "message": self.message},
        }


class ServerError(Exception):
    """A 5xx that is not "not now": a bug on the server; the capture stays in the buffer."""


@dataclass(frozen=True)
class FlushResult:
    sent: int
    left: int
    rejected: int = 0
    stopped: str | None = None  # why it stopped before the end, if it did
    error: CaptureRejected | None = None  # the token or line is refused: nothing else can go

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "error"}
        return {k: v for k, v in out.items() if v is not None}


def content_type_for(filename: str, data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


# The server's codes for an edge decision it cannot record (the capture itself was fine).
EDGE_DECISION_REFUSALS = ("invalid_edge_decision", "unknown_model_version")


def _edge_decision_refused(response: httpx.Response) -> bool:
    error = _json(response).get("error")
    return (
        response.status_code == 400
        and isinstance(error, dict)
        and error.get("code") in EDGE_DECISION_REFUSALS
    )


def post_capture(
    http: httpx.Client,
    *,
    line: str,
    idempotency_key: str,
    image: bytes,
    filename: str = "capture.jpg",
    content_type: str = "image/jpeg",
    captured_at: str | None = None,
    metadata: dict[str, Any] | None = None,
    edge_decision: dict[str, Any] | None = None,
    url: str = "/api/v1/captures",
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> httpx.Response:
    """POST /api/v1/captures, retried with the same key while the server cannot be reached or
    answers "not now". `edge_decision`: the edge model's verdict given while the server was
    down (the server records it instead of deciding again). Returns the server's final answer;
    raises ServerUnavailable."""
    form = {"line": line, "idempotency_key": idempotency_key}
    if captured_at:
        form["captured_at"] = captured_at
    if metadata is not None:
        form["metadata"] = json.dumps(metadata)
    if edge_decision is not None:
        form["edge_decision"] = json.dumps(edge_decision, sort_keys=True)

    def send() -> httpx.Response:
        return http.post(url, data=form, files={"image": (filename, image, content_type)})

    return request_with_retries(send, policy=policy or RetryPolicy(), sleep=sleep, rng=rng)


class StationClient:
    """One station talking to the platform. `on_decision` and `on_correction` are called with
    the capture's state as the server sends it (`{"id", "status", "verdict", ...}`)."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        buffer: Buffer,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 3.0,
        on_decision: CaptureHook | None = None,
        on_correction: CaptureHook | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        settings_max_age: float = 60.0,
        model_max_age: float = 300.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.buffer = buffer
        self.retry = retry or RetryPolicy()
        self.connect_timeout = connect_timeout
        self.on_decision = on_decision
        self.on_correction = on_correction
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.settings_max_age = settings_max_age
        self.model_max_age = model_max_age
        options: dict[str, Any] = {
            "base_url": self.url,
            "headers": {"Authorization": f"Token {token}"},
            "timeout": httpx.Timeout(timeout, connect=connect_timeout),
        }
        if transport is not None:
            options["transport"] = transport
        self.http = httpx.Client(**options)
        self._edge: EdgeModel | None = None
        self._edge_stamp: tuple[str, int] | None = None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> StationClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- sending ----------------------------------------------------------------------------

    def capture(
        self,
        image: bytes,
        *,
        line: str,
        filename: str = "capture.jpg",
        captured_at: str | None = None,
        metadata: dict[str, Any] | None = None,
        wait: float = 0.0,
        watched: tuple[str, int, int] | None = None,
    ) -> CaptureResult:
        """Store the capture (new key) in the buffer, then send it; with `wait`, wait up to so
        many seconds for a pending verdict. Raises CaptureRejected for a bad request."""
        record = self.buffer_add(
            image,
            line=line,
            filename=filename,
            captured_at=captured_at,
            metadata=metadata,
            watched=watched,
        )
        return self.send(record, wait=wait)

    def buffer_add(
        self,
        image: bytes,
        *,
        line: str,
        filename: str = "capture.jpg",
        captured_at: str | None = None,
        metadata: dict[str, Any] | None = None,
        watched: tuple[str, int, int] | None = None,
    ) -> BufferedCapture:
        """Store a capture under a new key, to be sent by `send` or `flush`; `captured_at`
        defaults to now, so a capture sent hours later still says when the phone was seen."""
        return self.buffer.add(
            line=line,
            image=image,
            filename=filename,
            content_type=content_type_for(filename, image),
            captured_at=captured_at or datetime.now(UTC).isoformat(),
            metadata=metadata,
            source=watched[0] if watched else None,
            watched=watched,
        )

    def send(self, record: BufferedCapture, *, wait: float = 0.0) -> CaptureResult:
        """Send one buffered capture (its stored key); buffered when the server cannot take it."""
        try:
            answer = self._send(record)
        except (ServerUnavailable, ServerError) as exc:
            logger.warning("capture %s kept in the buffer: %s", record.idempotency_key, exc)
            return self.outage_result(record)
        if wait > 0 and answer.get("status") == "pending":
            answer = self.wait_for_verdict(answer, wait)
        return self._result(record.idempotency_key, answer)

    def _send(self, record: BufferedCapture) -> dict[str, Any]:
        assert record.image is not None, "an answered capture has no image left to send"

        def post(edge_decision: dict[str, Any] | None) -> httpx.Response:
            return post_capture(
                self.http,
                line=record.line,
                idempotency_key=record.idempotency_key,
                image=record.image,
                filename=record.filename,
                content_type=record.content_type,
                captured_at=record.captured_at,
                metadata=record.metadata,
                edge_decision=edge_decision,
                policy=self.retry,
                sleep=self.sleep,
                rng=self.rng,
            )

        response = post(record.edge_decision)
        if record.edge_decision is not None and _edge_decision_refused(response):
            # The server stored nothing (e.g. that model version is gone from its registry):
            # the capture itself still goes, and the server decides it; a verdict other than
            # the one the phone got comes back as a correction (`_reconcile`).
            logger.warning(
                "capture %s: the server refused its edge decision (%s); sent without it",
                record.idempotency_key,
                response.text[:300],
            )
            response = post(None)
        return self._answer(record, response)

    def _answer(self, record: BufferedCapture, response: httpx.Response) -> dict[str, Any]:
        status, body, key = response.status_code, _json(response), record.idempotency_key
        if 200 <= status < 300:
            self.buffer.answered(key, http_status=status, answer=body)
            if isinstance(body.get("station"), int):
                self._station_seen(body["station"])
            return body
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        code = str(error.get("code") or f"http_{status}")
        message = str(error.get("message") or response.text[:300] or response.reason_phrase)
        if status in (401, 403):
            raise CaptureRejected(status, code, message, key, kept=True)
        if 400 <= status < 500:
            self.buffer.rejected(key, http_status=status, answer=body or {"error": error})
            raise CaptureRejected(status, code, message, key, kept=False)
        raise ServerError(f"HTTP {status} {code}: {message}")

    def _result(self, key: str, answer: dict[str, Any]) -> CaptureResult:
        return CaptureResult(
            status=str(answer.get("status")),
            key=key,
            id=answer.get("id"),
            verdict=answer.get("verdict"),
            decided_by=answer.get("decided_by"),
            station=answer.get("station"),
            answer=answer,
        )

    def flush(self) -> FlushResult:
        """Send what the buffer holds, oldest first, each with its stored key (so a capture the
        server already has, sent again after a crash, is answered with its first result). Stops
        at the first capture the server cannot take now, keeping the order."""
        sent = rejected = 0
        stopped: str | None = None
        refused: CaptureRejected | None = None
        lines: set[str] = set()
        while stopped is None:
            batch = self.buffer.queued(limit=50)
            if not batch:
                break
            for record in batch:
                self.buffer.attempt_noted(record.idempotency_key)  # flushes it has been through
                try:
                    answer = self._send(record)
                except (ServerUnavailable, ServerError) as exc:
                    stopped = str(exc)
                    break
                except CaptureRejected as exc:
                    if exc.kept:
                        stopped, refused = str(exc), exc
                        break
                    rejected += 1
                    logger.warning("capture %s rejected: %s", record.idempotency_key, exc)
                    continue
                sent += 1
                lines.add(record.line)
                self._reconcile(record, answer)
        for line in lines:
            self.line_refresh(line)
        return FlushResult(sent, self.buffer.count(QUEUED), rejected, stopped, refused)

    def _reconcile(self, record: BufferedCapture, answer: dict[str, Any]) -> None:
        """A phone that got an outage action (reject, or the edge model's verdict) and that the
        server now judges otherwise: the line lead hears it like any correction."""
        action, verdict = record.outage_action, answer.get("verdict")
        if answer.get("status") != "decided" or action not in ("pass", "fail", "reject"):
            return
        if verdict == action or (action == "reject" and verdict == "fail"):
            return
        self._correction(
            {**answer, "outage_action": action, "idempotency_key": record.idempotency_key}
        )

    # --- waiting for a verdict --------------------------------------------------------------

    def capture_get(self, capture_id: str, *, wait: float = 0.0) -> dict[str, Any] | None:
        """GET /api/v1/captures/{id} (a long poll with `wait`); None when it fails."""
        params = {"wait": f"{wait:.1f}"} if wait > 0 else None
        timeout = httpx.Timeout(wait + 15.0, connect=self.connect_timeout)
        try:
            response = self.http.get(
                f"/api/v1/captures/{capture_id}", params=params, timeout=timeout
            )
        except RETRY_ERRORS as exc:
            logger.info("reading capture %s failed: %s", capture_id, exc)
            return None
        if response.status_code != 200:
            logger.info("reading capture %s: HTTP %s", capture_id, response.status_code)
            return None
        return _json(response)

    def wait_for_verdict(self, answer: dict[str, Any], timeout: float) -> dict[str, Any]:
        """The capture once decided, or as it stands when `timeout` seconds are up: on the
        station websocket, else (or once it drops) by long polling."""
        deadline = time.monotonic() + timeout
        if answer.get("status") == "decided":
            return answer
        station = answer.get("station") or self.station_id()
        if isinstance(station, int):
            result = self._wait_on_socket(answer, station, deadline)
            if result is not None:
                return result
        return self._wait_polling(answer, deadline)

    @contextlib.contextmanager
    def station_socket(
        self, station_id: int, *, open_timeout: float = SOCKET_OPEN_SECONDS
    ) -> Iterator[Any]:
        """The station websocket, authenticated with the Authorization header (never a token in
        the URL), its hello read. Raises OSError/websockets errors when it cannot be used."""
        from websockets.sync.client import connect

        with connect(
            self.websocket_url(station_id),
            additional_headers={"Authorization": f"Token {self.token}"},
            open_timeout=open_timeout,
            close_timeout=1,
        ) as socket:
            hello = json.loads(socket.recv(timeout=open_timeout))
            if not isinstance(hello, dict) or hello.get("type") != "hello":
                message = hello.get("message") if isinstance(hello, dict) else hello
                raise ConnectionRefusedError(f"the station websocket refused: {message}")
            yield socket

    def websocket_url(self, station_id: int) -> str:
        parts = urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        path = parts.path.rstrip("/") + f"/ws/stations/{station_id}/"
        return urlunsplit((scheme, parts.netloc, path, "", ""))

    def _wait_on_socket(
        self, answer: dict[str, Any], station: int, deadline: float
    ) -> dict[str, Any] | None:
        """None when the websocket cannot be used or drops before the end."""
        from websockets.exceptions import WebSocketException

        try:
            with self.station_socket(station) as socket:
                logger.info("waiting on the station websocket for capture %s", answer["id"])
                return self._wait_for_message(socket, answer, deadline)
        except (OSError, WebSocketException, ValueError) as exc:  # TimeoutError is an OSError
            logger.info("station websocket unavailable (%s): long polling instead", exc)
            return None

    def _wait_for_message(
        self, socket: Any, answer: dict[str, Any], deadline: float
    ) -> dict[str, Any]:
        # A verdict made between the answer and the subscription is only in the database.
        current = self.capture_get(answer["id"]) or answer
        if current.get("status") == "decided":
            return current
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                message = json.loads(socket.recv(timeout=min(remaining, SOCKET_RECHECK_SECONDS)))
            except TimeoutError:
                # Events are notifications (one can be lost); the database holds the state.
                current = self.capture_get(current["id"]) or current
                if current.get("status") == "decided":
                    return current
                continue
            current, done = self._on_message(message, current)
            if done:
                logger.info("verdict for capture %s from the station websocket", current["id"])
                return current
        return current

    def _on_message(self, message: Any, current: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """One message of the station websocket while waiting for `current`: (its state now,
        whether it is decided)."""
        capture = message.get("capture") if isinstance(message, dict) else None
        if not isinstance(capture, dict):
            return current, False
        ours = capture.get("id") == current.get("id")
        if message.get("type") == "correction" or not ours:
            self.message_dispatch(message)
        if ours:
            merged = {**current, **capture}
            return merged, merged.get("status") == "decided"
        return current, False

    def message_dispatch(self, message: Any) -> None:
        """A station websocket message to the hooks: a decision, or a correction (logged)."""
        capture = message.get("capture") if isinstance(message, dict) else None
        if not isinstance(capture, dict):
            return
        if message.get("type") == "correction":
            self._correction(capture)
        elif message.get("type") == "decision":
            self._decision(capture)

    def _wait_polling(self, answer: dict[str, Any], deadline: float) -> dict[str, Any]:
        current, failures = answer, 0
        while (remaining := deadline - time.monotonic()) > 0.05:
            fresh = self.capture_get(answer["id"], wait=min(MAX_POLL_SECONDS, remaining))
            if fresh is None:
                failures += 1
                self.sleep(min(remaining, self.retry.delay(min(failures, 6), None, self.rng)))
                continue
            failures, current = 0, fresh
            if fresh.get("status") == "decided":
                break
        return current

    def _decision(self, capture: dict[str, Any]) -> None:
        if self.on_decision is not None:
            self.on_decision(capture)

    def _correction(self, capture: dict[str, Any]) -> None:
        logger.warning(
            "correction for capture %s: now %s%s",
            capture.get("id"),
            capture.get("status"),
            f", {capture['verdict']}" if capture.get("verdict") else "",
        )
        if self.on_correction is not None:
            self.on_correction(capture)

    # --- what the station knows of itself and its line --------------------------------------

    def _token_tag(self) -> str:
        return hashlib.sha256(self.token.encode()).hexdigest()[:16]

    def station_id(self) -> int | None:
        """This station's id, as the server's last capture answer gave it (kept in the buffer)."""
        stored = self.buffer.state_get(f"station:{self._token_tag()}")
        return stored[0] if stored else None

    def _station_seen(self, station_id: int) -> None:
        if self.station_id() != station_id:
            self.buffer.state_put(f"station:{self._token_tag()}", station_id)

    def line_settings(self, line: str, *, max_age: float | None = None) -> dict[str, Any] | None:
        """The line's settings (outage policy, thresholds), read again from the server when the
        kept copy is older than `max_age` seconds; the kept copy when the server cannot answer."""
        max_age = self.settings_max_age if max_age is None else max_age
        kept = self.buffer.state_get(f"line:{line}")
        if kept is not None and time.time() - kept[1] < max_age:
            return kept[0]
        try:
            response = self.http.get(f"/api/v1/lines/{line}", timeout=5.0)
        except RETRY_ERRORS as exc:
            logger.info("line %s settings not read (%s): using the kept copy", line, exc)
            return kept[0] if kept else None
        if response.status_code != 200:
            logger.warning("line %s settings not read: HTTP %s", line, response.status_code)
            return kept[0] if kept else None
        body = _json(response)
        settings = {
            name: body.get(name)
            for name in (
                "code",
                "automation_level",
                "pass_threshold",
                "fail_threshold",
                "outage_policy",
            )
        }
        self.buffer.state_put(f"line:{line}", settings)
        return settings

    def line_settings_kept(self, line: str) -> dict[str, Any] | None:
        kept = self.buffer.state_get(f"line:{line}")
        return kept[0] if kept else None

    def outage_policy(self, line: str) -> str:
        """hold, reject or edge, as last read from the server (hold when never read)."""
        policy = (self.line_settings_kept(line) or {}).get("outage_policy")
        return policy if policy in OUTAGE_POLICIES else "hold"

    def model_path(self, line: str) -> Path:
        """Where the line's edge model is kept: beside the buffer."""
        return self.buffer.path.with_name(f"{self.buffer.path.stem}-{line}.onnx")

    def edge_model_sync(self, line: str) -> str:
        """Fetch the line's edge model if the server has another one (If-None-Match with the
        kept ETag). Returns downloaded, unchanged, none (the line has no edge model: the kept
        one is removed), pending (being exported), or unreachable."""
        path, name = self.model_path(line), f"model:{line}"
        kept = self.buffer.state_get(name)
        headers = {}
        if kept is not None and path.exists() and kept[0].get("etag"):
            headers["If-None-Match"] = kept[0]["etag"]
        timeout = httpx.Timeout(120.0, connect=self.connect_timeout)
        try:
            with self.http.stream(
                "GET", f"/api/v1/lines/{line}/model", headers=headers, timeout=timeout
            ) as response:
                if response.status_code == 304:
                    self.buffer.state_put(name, kept[0])  # checked now
                    return "unchanged"
                if response.status_code == 404:
                    response.read()
                    logger.warning("line %s has no edge model: %s", line, _json(response))
                    path.unlink(missing_ok=True)
                    self.buffer.state_delete(name)
                    return "none"
                if response.status_code != 200:
                    status = response.status_code
                    logger.info("line %s edge model not fetched: HTTP %s", line, status)
                    return "pending"
                return self._model_store(line, response)
        except RETRY_ERRORS as exc:
            logger.info("line %s edge model not fetched: %s", line, exc)
            return "unreachable"

    def _model_store(self, line: str, response: httpx.Response) -> str:
        path = self.model_path(line)
        part = path.with_name(path.name + ".part")
        digest = hashlib.sha256()
        with part.open("wb") as handle:
            for chunk in response.iter_bytes():
                digest.update(chunk)
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        expected = response.headers.get("X-Model-Sha256")
        if expected and digest.hexdigest() != expected:
            part.unlink(missing_ok=True)
            logger.warning("line %s edge model download damaged (sha256 differs): not kept", line)
            return "unreachable"
        os.replace(part, path)  # the old model stays usable until the new one is whole
        self.buffer.state_put(
            f"model:{line}",
            {
                "etag": response.headers.get("ETag"),
                "sha256": digest.hexdigest(),
                "version": response.headers.get("X-Model-Version"),
            },
        )
        return "downloaded"

    def line_refresh(self, line: str, *, force: bool = False) -> None:
        """Keep the line's settings, and with the edge policy its model, fresh enough for the
        next outage (no more than one read per max age)."""
        settings = self.line_settings(line, max_age=0 if force else None)
        if not settings or settings.get("outage_policy") != "edge":
            return
        kept = self.buffer.state_get(f"model:{line}")
        stale = kept is None or time.time() - kept[1] >= self.model_max_age
        if force or stale or not self.model_path(line).exists():
            self.edge_model_sync(line)

    # --- while the server cannot be reached -------------------------------------------------

    def outage_result(self, record: BufferedCapture) -> CaptureResult:
        """A capture the server cannot take now: it stays buffered, and the phone gets what the
        line's outage policy says (hold, reject, or the edge model's verdict; unsure: hold).
        The edge model's decision is kept with the capture, to be sent with it."""
        policy = self.outage_policy(record.line)
        decision = record.edge_decision  # decided before: the phone already has that verdict
        if decision is None and policy == "edge":
            decision = self.edge_decide(record.line, record.image)
        edge_verdict = decision["verdict"] if decision else None
        action = (edge_verdict or "hold") if decision or policy == "edge" else policy
        recorded = None
        if edge_verdict and decision.get("model_version") is not None:
            recorded = decision
        elif edge_verdict:
            # Without the model's version the server cannot record an edge decision: the phone
            # has the verdict all the same, and the server decides the capture when it is back.
            logger.warning("line %s: the edge model's version is unknown; not sent", record.line)
        self.buffer.outage_noted(record.idempotency_key, action, edge_decision=recorded)
        return CaptureResult(
            status="buffered",
            key=record.idempotency_key,
            policy=policy,
            edge_verdict=edge_verdict,
            action=action,
        )

    def edge_verdict(self, line: str, image: bytes | None) -> str | None:
        """The kept edge model's verdict with the line's thresholds; None when unsure, or when
        there is no model (or image) to judge with."""
        decision = self.edge_decide(line, image)
        return decision["verdict"] if decision else None

    def edge_decide(self, line: str, image: bytes | None) -> dict[str, Any] | None:
        """The kept edge model's decision: `verdict` (pass, fail, or None when unsure), `score`,
        the `model_version` and `model_sha256` the server sent with the model, and when it was
        `decided_at`; None when there is no model (or image) to judge with."""
        path, settings = self.model_path(line), self.line_settings_kept(line) or {}
        if image is None or not path.exists():
            logger.warning("line %s: no edge model kept yet; the phone is held", line)
            return None
        try:
            stamp = (str(path), path.stat().st_mtime_ns)
            if self._edge is None or self._edge_stamp != stamp:
                self._edge, self._edge_stamp = EdgeModel(path), stamp
            score = self._edge.score(image)
        except Exception as exc:  # a damaged model or image must not stop the station
            logger.warning("line %s: the edge model could not judge the image: %s", line, exc)
            return None
        pass_threshold, fail_threshold = (
            settings.get("pass_threshold"),
            settings.get("fail_threshold"),
        )
        verdict = verdict_for(
            score,
            pass_threshold=0.3 if pass_threshold is None else float(pass_threshold),
            fail_threshold=0.7 if fail_threshold is None else float(fail_threshold),
        )
        kept = self.buffer.state_get(f"model:{line}")
        model = kept[0] if kept else {}
        version = model.get("version")
        return {
            "verdict": verdict,
            "score": round(score, 6),
            "model_version": int(version) if str(version).isdigit() else None,
            "model_sha256": model.get("sha256"),
            "decided_at": datetime.now(UTC).isoformat(),
        }
