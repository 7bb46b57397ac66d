"""The request body limit under ASGI: an oversized body is refused before Django reads it.

Django's ASGI handler reads the whole body into a spool file before any view (or the
authentication) runs, and uvicorn sets no limit of its own. This middleware answers 413 at once
when `Content-Length` announces too much, and stops a chunked or streamed body as soon as it
passes the limit, without handing the rest to Django.

Limits, by path: the capture endpoint gets `CAPTURE_MAX_BYTES` plus room for the multipart
envelope and the other fields, dataset imports `IMPORT_MAX_BYTES`, everything else
`REQUEST_MAX_BYTES`. Settings are read per request (never at import time).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CAPTURE_PATH = "/api/v1/captures"
IMPORT_PATH_PREFIX = "/api/v1/datasets/imports"


def body_limit(path: str) -> int:
    """The most bytes a request body to `path` may have."""
    if path.rstrip("/") == CAPTURE_PATH:
        return settings.CAPTURE_MAX_BYTES + settings.CAPTURE_FORM_OVERHEAD_BYTES
    if path.startswith(IMPORT_PATH_PREFIX):
        return settings.IMPORT_MAX_BYTES
    return settings.REQUEST_MAX_BYTES


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large_message(limit: int, announced: int | None) -> str:
    size = f"{announced} bytes" if announced is not None else "more than the limit"
    return (
        f"The request body is {size}; this endpoint accepts at most {limit} bytes "
        f"(images at most {settings.CAPTURE_MAX_BYTES} bytes)."
    )


async def _send_too_large(send: Send, limit: int, announced: int | None) -> None:
    body = json.dumps(
        {"error": {"code": "too_large", "message": _too_large_message(limit, announced)}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The rest of the body is never read: the connection cannot be reused.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodySizeLimitMiddleware:
    """Wraps the HTTP app; websockets and lifespan pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        limit = body_limit(path)
        announced = _content_length(scope)
        if announced is not None and announced > limit:
            # Answered without reading a byte: the client learns at once (and a client that
            # sent `Expect: 100-continue` never sends the body at all).
            await _send_too_large(send, limit, announced)
            return

        received = 0
        exceeded = False
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    # Django takes a disconnect as "the client went away" and stops reading.
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        await self.app(scope, limited_receive, tracked_send)
        if exceeded and not response_started:
            await _send_too_large(send, limit, None)
