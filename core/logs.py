"""Log records with the request id, as one JSON object a line (or plain text for a person).

LOGGING in config/settings.py puts `RequestIdFilter` on the console handler and picks the
formatter: `JsonFormatter` by default with DEBUG off, plain text with DEBUG on (LOG_FORMAT
chooses either way).
"""

import logging
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from core.request_id import request_id_get


class RequestIdFilter(logging.Filter):
    """Adds `record.request_id`: the id of the HTTP request or Celery task being handled, or
    "-" outside both (start-up, beat, a management command)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id_get() or "-"
        return True


class JsonFormatter(_JsonFormatter):
    """`{"time": ..., "level": ..., "logger": ..., "message": ..., "request_id": ...}` plus
    what the call passed in `extra` (and `exc_info` with a traceback)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", ["levelname", "name", "message", "request_id"])
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", "time")
        # uvicorn adds an ANSI-coloured copy of each message; Django adds the request object.
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, "color_message"])
        super().__init__(**kwargs)

    def process_log_record(self, log_record: dict[str, Any]) -> dict[str, Any]:
        request = log_record.get("request")
        if request is not None and hasattr(request, "get_full_path"):
            # django.request's records carry the HttpRequest: log what it asked, not its repr.
            log_record["request"] = f"{request.method} {request.get_full_path()}"
        return super().process_log_record(log_record)
