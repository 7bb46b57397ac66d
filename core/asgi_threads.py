"""The station's capture POST served by Django's WSGI handler in a worker thread.

Under Django's ASGI handler a sync view pays for every switch between the event loop and a
thread: the request signals, each async-capable middleware's hooks (Django's `MiddlewareMixin`
runs `process_request` and `process_response` through `sync_to_async` one by one) and the view
itself. On the capture path that was about a dozen switches and ~10 ms of a 55 ms round trip,
most of it with the event loop busy. Here the body is read on the event loop, then the whole
request (signals, middleware, view, response) runs in one thread of a small pool, in one go.

Only `POST /api/v1/captures` is served so: it is short, CPU-bound and the station waits for it.
Everything else (pages, the long poll that waits on the channel layer without a thread, file
downloads) stays on Django's ASGI handler. The body limit still applies first
(core/asgi_limits.py wraps this app), and the response is sent in one piece (a capture answer is
a few kilobytes of JSON).

`early`, if given, is called on the event loop with the request's environ and body once the
body is in, before the request goes to its thread, when no other request of these routes is in
flight in the process. It may return work the request will need (the capture's image decoded
while the framework authenticates and parses), leaving a handle in the environ for the view;
that work then runs on the event loop itself, right after the request went to its thread, and
must let go of the interpreter's lock while it works (a C decoder does) so the two run on two
cores. It holds the loop meanwhile (~1.6 ms for a capture's JPEG), which is why it is done only
when no other capture is in flight: with others in flight the cores are busy anyway. Handing
it to a pool thread instead made it wait for that thread to wake and then for the interpreter,
which the request's thread held through the framework: in about a third of the captures the
decoding began only when the request asked for it (1.3 ms lost each time). What `early` or its
work raises is logged and the request goes on without it; work that fails must leave nothing
waiting for it.
"""

from __future__ import annotations

import asyncio
import io
import logging
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.core.handlers.wsgi import WSGIHandler

from core.asgi_limits import CAPTURE_PATH, ASGIApp, Receive, Scope, Send

THREADED_ROUTES = {("POST", CAPTURE_PATH)}

Early = Callable[[dict[str, Any], bytes], Callable[[], None] | None]

logger = logging.getLogger(__name__)


def wsgi_environ(scope: Scope, body: bytes) -> dict[str, Any]:
    """The WSGI environ (PEP 3333) of an ASGI HTTP scope and its whole body."""
    root = scope.get("root_path", "")
    path = scope["path"]
    if root and path.startswith(root):
        path = path[len(root) :]
    server = scope.get("server") or ("localhost", 80)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root.encode().decode("latin-1"),
        "PATH_INFO": path.encode().decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1] if server[1] is not None else 80),
        "REMOTE_ADDR": (scope.get("client") or ("", 0))[0],
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        if name == "CONTENT_LENGTH":
            continue  # the body as read is what counts
        key = "CONTENT_TYPE" if name == "CONTENT_TYPE" else f"HTTP_{name}"
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


class ThreadedRoutes:
    """Wraps the ASGI HTTP app; requests in THREADED_ROUTES run in one thread each, whole."""

    def __init__(self, app: ASGIApp, *, threads: int, early: Early | None = None) -> None:
        self.app = app
        self.threads = threads
        self.early = early
        self.in_flight = 0  # requests of these routes between their body and their answer
        self._wsgi: WSGIHandler | None = None
        self._executor: ThreadPoolExecutor | None = None

    def _handler(self) -> tuple[WSGIHandler, ThreadPoolExecutor]:
        if self._wsgi is None or self._executor is None:
            self._wsgi = WSGIHandler()  # loads the middleware chain in sync mode
            self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="http-sync")
        return self._wsgi, self._executor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) not in THREADED_ROUTES:
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away, or the body limit stopped the body
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        handler, executor = self._handler()
        body = b"".join(chunks)
        environ = wsgi_environ(scope, body)
        work = None
        if self.early is not None and self.in_flight == 0:
            try:
                work = self.early(environ, body)
            except Exception:
                _early_failed(scope)
        loop = asyncio.get_running_loop()
        self.in_flight += 1
        try:
            answer = loop.run_in_executor(executor, _respond, handler, environ)
            if work is not None:
                try:
                    work()  # here, while the request's thread goes through the framework
                except Exception:
                    _early_failed(scope)
            status, headers, body = await answer
        finally:
            self.in_flight -= 1
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _early_failed(scope: Scope) -> None:
    logger.exception("early work for %s %s failed", scope["method"], scope["path"])


def _respond(handler: WSGIHandler, environ: dict[str, Any]) -> tuple[int, list, bytes]:
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info=None) -> None:
        started[:] = [status, headers]

    response = handler(environ, start_response)
    try:
        body = b"".join(response)
    finally:
        response.close()  # request_finished: the database connection goes back to the pool
    status, headers = started
    return (
        int(status.split(" ", 1)[0]),
        [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers],
        body,
    )
