"""Stand-ins at the edge of the station client: a station API that keeps captures by
idempotency key (as the platform does), served over httpx.MockTransport or a real loopback HTTP
server, and a tiny ONNX model whose score is the image's mean brightness."""

from __future__ import annotations

import email.parser
import email.policy
import io
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image


def jpeg(value: int | None = None, *, size: tuple[int, int] = (64, 48), seed: int = 0) -> bytes:
    """A JPEG of one grey `value`, or of noise when None."""
    width, height = size
    if value is None:
        pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    else:
        pixels = np.full((height, width, 3), value, np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=95)
    return out.getvalue()


def form_fields(content_type: str, body: bytes) -> dict[str, bytes]:
    head = b"Content-Type: " + content_type.encode() + b"\r\n\r\n"
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    return {
        part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
        for part in message.iter_parts()
    }


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, bytes] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)  # when it arrived


Reply = tuple[int, dict[str, str], bytes]


class StationApi:
    """Captures by idempotency key: 201 the first time, 200 (the first answer) after. Set
    `script` to a list of replies (or callables) that come before the normal ones, e.g.
    [(503, {"Retry-After": "1"}, b"...")]; `status` for new captures (pending or decided)."""

    def __init__(self, *, station: int = 7, status: str = "decided", verdict: str = "pass"):
        self.station, self.status, self.verdict = station, status, verdict
        self.captures: dict[str, dict[str, Any]] = {}
        self.seen: list[Seen] = []
        self.script: list[Reply | Callable[[Seen], Reply]] = []
        self.line: dict[str, Any] = {
            "code": "L1",
            "automation_level": "partial",
            "pass_threshold": 0.3,
            "fail_threshold": 0.7,
            "outage_policy": "hold",
        }
        self.model: bytes | None = None
        self.lock = threading.Lock()

    def keys_posted(self) -> list[str]:
        posts = [s for s in self.seen if s.path == "/api/v1/captures"]
        return [s.form["idempotency_key"].decode() for s in posts]

    def handle(self, seen: Seen) -> Reply:
        with self.lock:
            self.seen.append(seen)
            if self.script:
                reply = self.script.pop(0)
                return reply(seen) if callable(reply) else reply
            return self._normal(seen)

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
        return (
            status,
            {"Content-Type": "application/json", **(headers or {})},
            json.dumps(body).encode(),
        )

    def _normal(self, seen: Seen) -> Reply:
        path = seen.path.split("?")[0]
        if seen.method == "POST" and path == "/api/v1/captures":
            key = seen.form["idempotency_key"].decode()
            if key in self.captures:
                return self._json(200, self.captures[key])
            decided = self.status == "decided"
            self.captures[key] = {
                "id": str(uuid.uuid4()),
                "line": seen.form["line"].decode(),
                "station": self.station,
                "idempotency_key": key,
                "status": self.status,
                "verdict": self.verdict if decided else None,
                "decided_by": "model" if decided else None,
            }
            return self._json(201, self.captures[key])
        if seen.method == "GET" and path.startswith("/api/v1/captures/"):
            capture_id = path.rsplit("/", 1)[1]
            for capture in self.captures.values():
                if capture["id"] == capture_id:
                    return self._json(200, capture)
            return self._json(404, {"error": {"code": "not_found", "message": "No such capture."}})
        if seen.method == "GET" and path == "/api/v1/lines/L1/model":
            if self.model is None:
                return self._json(404, {"error": {"code": "no_production_model", "message": "-"}})
            import hashlib

            sha = hashlib.sha256(self.model).hexdigest()
            headers = {"ETag": f'"{sha}"', "X-Model-Sha256": sha, "X-Model-Version": "3"}
            if seen.headers.get("if-none-match") == f'"{sha}"':
                return 304, headers, b""
            return 200, {"Content-Type": "application/octet-stream", **headers}, self.model
        if seen.method == "GET" and path == "/api/v1/lines/L1":
            return self._json(200, self.line)
        return self._json(404, {"error": {"code": "unknown", "message": f"no {path}"}})

    def decide(self, verdict: str = "fail") -> None:
        for capture in self.captures.values():
            capture.update(status="decided", verdict=verdict, decided_by="human")

    # --- as an httpx transport --------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        def handler(request: httpx.Request) -> httpx.Response:
            content_type = request.headers.get("content-type", "")
            body = request.read()
            form = form_fields(content_type, body) if content_type.startswith("multipart") else {}
            path = request.url.raw_path.decode()
            seen = Seen(request.method, path, dict(request.headers), form)
            status, headers, content = self.handle(seen)
            return httpx.Response(status, headers=headers, content=content)

        return httpx.MockTransport(handler)


class LoopbackServer:
    """The StationApi on a real HTTP server on 127.0.0.1, in a thread (for the CLI's process)."""

    def __init__(self, api: StationApi) -> None:
        self.api = api
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                content_type = self.headers.get("Content-Type", "")
                multipart = content_type.startswith("multipart")
                form = form_fields(content_type, body) if multipart else {}
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, reply_headers, content = outer.api.handle(
                    Seen(self.command, self.path, headers, form)
                )
                self.send_response(status)
                for name, value in reply_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def brightness_model(path: Path) -> Path:
    """An ONNX file with the edge contract's names: `images` (N, 3, H, W) float32 0..255 in;
    `heatmap` (N, 1, H/8, W/8) and `score` (N,) out, the score being the mean brightness/255."""
    import onnx
    from onnx import TensorProto, helper

    scale = helper.make_tensor("scale", TensorProto.FLOAT, [], [1 / 255])
    nodes = [
        helper.make_node("Mul", ["images", "scale"], ["unit"]),
        helper.make_node("ReduceMean", ["unit"], ["gray"], axes=[1], keepdims=1),
        helper.make_node("AveragePool", ["gray"], ["heatmap"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("ReduceMean", ["unit"], ["score"], axes=[1, 2, 3], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "brightness",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [
            helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, ["n", 1, "hh", "ww"]),
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["n"]),
        ],
        initializer=[scale],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path
