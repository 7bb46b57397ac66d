"""The one error type for broken rules, and the DRF handler that turns every API error into JSON.

Bodies look like `{"error": {"code": "not_image", "message": "...", "fields": {...}}}`.
"""

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
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
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.extra = extra or {}


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


def api_exception_handler(exc: Exception, context: dict) -> Response:
    if isinstance(exc, ApplicationError):
        return Response(error_body(exc.code, exc.message, **exc.extra), status=exc.status)
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
    if isinstance(exc, exceptions.APIException):
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else exc.default_code
        message = str(exc.detail) if isinstance(exc.detail, str) else _MESSAGES.get(code, "")
        if code in _MESSAGES and code in {"not_authenticated", "not_found"}:
            message = str(exc.detail) if str(exc.detail) != exc.default_detail else _MESSAGES[code]
        response.data = error_body(code, message or _MESSAGES.get(code, "Request failed."))
    return response


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
    if _wants_json(request):
        return json_server_error(request)
    from django.views.defaults import server_error

    return server_error(request)
