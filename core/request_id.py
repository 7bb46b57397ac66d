"""The id of the request (or Celery task) being handled: set per HTTP request, read by logs.

Every HTTP request gets an id: the caller's `X-Request-ID` when it is sane (a proxy or a
station may have logged it already), else a new uuid. It is answered in the `X-Request-ID`
header, put on every log record of the request (`core.logs.RequestIdFilter`), and travels in
the headers of the Celery tasks the request sends (config/celery.py), so worker logs carry it.
"""

import re
import uuid
from contextvars import ContextVar, Token

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

HEADER = "X-Request-ID"
# The name of the id in a Celery message's headers.
TASK_HEADER = "request_id"

_current: ContextVar[str | None] = ContextVar("request_id", default=None)
# What a caller may send: a uuid, a proxy's hex id, "station-7:1234"... never spaces, quotes
# or control characters that would garble a log line or a response header.
_SANE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def request_id_get() -> str | None:
    return _current.get()


def request_id_set(value: str | None) -> Token:
    return _current.set(value)


def request_id_reset(token: Token) -> None:
    _current.reset(token)


def request_id_for(incoming: str | None) -> str:
    """The caller's id when it is sane, else a new one."""
    if incoming and _SANE.match(incoming):
        return incoming
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """First in MIDDLEWARE: the id is set before anything logs and answered on every response,
    redirects and errors included. Async-capable: it never makes Django run the chain sync."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        token = self._start(request)
        try:
            response = self.get_response(request)
        finally:
            request_id_reset(token)
        response[HEADER] = request.request_id
        return response

    async def _acall(self, request):
        token = self._start(request)
        try:
            response = await self.get_response(request)
        finally:
            request_id_reset(token)
        response[HEADER] = request.request_id
        return response

    @staticmethod
    def _start(request) -> Token:
        request.request_id = request_id_for(request.headers.get(HEADER))
        return request_id_set(request.request_id)
