"""The one error type for broken rules, and the DRF handler that turns every API error into JSON.

Bodies look like `{"error": {"code": "not_image", "message": "...", "fields": {...}}}`.
"""

import json
import logging
import sys
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import (
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError as DatabaseInterfaceError
from django.db import OperationalError as DatabaseOperationalError
from django.http import Http404, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger("core.errors")


class ApplicationError(Exception):
    """A rule of the platform was broken; `status` is the HTTP status an API answers with."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "invalid",
        status: int = 400,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.extra = extra or {}
        # e.g. {"Retry-After": "2"} on a 503: the client may try again then.
        self.headers = headers or {}


_MESSAGES = {
    "not_authenticated": "Authentication is required: send 'Authorization: Token <station token>' "
    "or log in.",
    "authentication_failed": "The token or credentials are not valid.",
    "permission_denied": "You may not do this.",
    "not_found": "Not found.",
    "method_not_allowed": "This method is not allowed here.",
    "unsupported_media_type": "Send multipart/form-data or JSON.",
    "parse_error": "The request body could not be parsed.",
}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def _first_code(detail: Any) -> str:
    if isinstance(detail, dict):
        for value in detail.values():
            return _first_code(value)
    if isinstance(detail, list) and detail:
        return _first_code(detail[0])
    return getattr(detail, "code", "invalid")


def _describe_fields(detail: dict) -> str:
    parts = []
    for field, errors in detail.items():
        text = " ".join(str(e) for e in errors) if isinstance(errors, list) else str(errors)
        parts.append(text if field == "non_field_errors" else f"{field}: {text}")
    return "; ".join(parts)


def _bad_request_error(exc: Exception) -> ApplicationError | None:
    """What a request Django or a parser refused as malformed or oversized becomes (never 500)."""
    if isinstance(exc, RequestDataTooBig):
        return ApplicationError(
            "The request's form fields or JSON body are too large "
            f"(at most {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes, files aside).",
            code="too_large",
            status=413,
        )
    if isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        return ApplicationError(
            "The request has too many form fields "
            f"(at most {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS}).",
            code="too_many_fields",
        )
    if isinstance(exc, RecursionError):
        return ApplicationError("The request body is nested too deeply.", code="too_deep")
    if isinstance(exc, SuspiciousOperation):
        return ApplicationError("The request is malformed.", code="bad_request")
    if isinstance(exc, UnicodeDecodeError | json.JSONDecodeError):
        return ApplicationError(_MESSAGES["parse_error"], code="parse_error")
    return None


# The database cannot be reached (down, restarting, failing over, its pool out of connections):
# psycopg's own errors (the pool's timeout among them) reach us wrapped by Django, or not.
try:
    from psycopg import InterfaceError as _PsycopgInterfaceError
    from psycopg import OperationalError as _PsycopgOperationalError
except ImportError:  # SQLite only
    _DATABASE_ERRORS: tuple[type[BaseException], ...] = ()
else:
    _DATABASE_ERRORS = (_PsycopgOperationalError, _PsycopgInterfaceError)
DATABASE_ERRORS = (DatabaseOperationalError, DatabaseInterfaceError, *_DATABASE_ERRORS)
DATABASE_RETRY_AFTER_SECONDS = 5


def database_unavailable_error(exc: BaseException) -> ApplicationError | None:
    """A database that cannot answer is a 503 the client retries (Retry-After), never a 500."""
    if not isinstance(exc, DATABASE_ERRORS):
        return None
    logger.warning("database unavailable: %s: %s", type(exc).__name__, str(exc).strip()[:500])
    return ApplicationError(
        "The database is unavailable right now; retry in a few seconds "
        "(a capture with the same idempotency key is stored once).",
        code="database_unavailable",
        status=503,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


def database_unavailable_response(request, exc: BaseException) -> HttpResponse | None:
    """The 503 a plain Django view answers when the database is unavailable (JSON under
    /api/, a short page elsewhere); None for any other error."""
    error = database_unavailable_error(exc)
    if error is None:
        return None
    if _wants_json(request):
        response = JsonResponse(error_body(error.code, error.message), status=error.status)
    else:
        response = HttpResponse(
            "The service is unavailable for a moment: its database cannot be reached. "
            "Reload the page in a few seconds.",
            status=error.status,
            content_type="text/plain; charset=utf-8",
        )
    for name, value in error.headers.items():
        response[name] = value
    return response


def api_exception_handler(exc: Exception, context: dict) -> Response:
    exc = _bad_request_error(exc) or database_unavailable_error(exc) or exc
    if isinstance(exc, ApplicationError):
        return Response(
            error_body(exc.code, exc.message, **exc.extra), status=exc.status, headers=exc.headers
        )
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(detail={"non_field_errors": exc.messages})
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = exception_handler(exc, context)
    if response is None:
        view = context.get("view")
        logger.exception("Unhandled error in %s", type(view).__name__ if view else "API view")
        return Response(
            error_body("server_error", "An internal error occurred; it has been logged."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = error_body(
            _first_code(detail) if _first_code(detail) != "invalid" else "invalid",
            _describe_fields(detail),
            fields=detail,
        )
        return response
    if isinstance(exc, exceptions.Throttled):
        # DRF's handler has set Retry-After to exc.wait, in whole seconds.
        wait = f"retry in {exc.wait} s" if exc.wait else "retry later"
        response.data = error_body("throttled", f"Too many requests; {wait}.")
        return response
    if isinstance(exc, exceptions.APIException):
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else exc.default_code
        message = str(exc.detail) if isinstance(exc.detail, str) else _MESSAGES.get(code, "")
        if code in _MESSAGES and code in {"not_authenticated", "not_found"}:
            message = str(exc.detail) if str(exc.detail) != exc.default_detail else _MESSAGES[code]
        response.data = error_body(code, message or _MESSAGES.get(code, "Request failed."))
    return response


@csrf_exempt  # it changes nothing: a POST to an unknown API URL is a 404, not a CSRF 403
def json_not_found(request, exception=None) -> JsonResponse:
    return JsonResponse(error_body("not_found", f"No such page: {request.path}"), status=404)


def json_server_error(request) -> JsonResponse:
    return JsonResponse(
        error_body("server_error", "An internal error occurred; it has been logged."), status=500
    )


def _wants_json(request) -> bool:
    return request.path.startswith("/api/")


def handler404(request, exception=None):
    if _wants_json(request):
        return json_not_found(request, exception)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def handler500(request):
    # With DEBUG off, a database error outside any view (a middleware's session read) lands
    # here; core.middleware answers those raised by views.
    unavailable = database_unavailable_response(request, sys.exc_info()[1] or Exception())
    if unavailable is not None:
        return unavailable
    if _wants_json(request):
        return json_server_error(request)
    from django.views.defaults import server_error

    return server_error(request)
