"""What the OpenAPI schema says about errors and pages, so it is true (shared/INTERFACES.md).

Every API error is `{"error": {"code", "message"}}` (core/errors.py). A view lists the errors
that are its own (`responses={**errors(404, 409)}`); those any operation can give are added to
every operation by `common_errors_hook`: 401/403 where a login or token is needed, 400 where
there is input to refuse, 404 where the path names something, 413 and 415 where there is a
body, 429 (throttles) and 503 (a database or service that is down).
"""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers


class AutoSchema(SpectacularAutoSchema):
    """Components named after their view when nested (`CaptureCollectionApi.InputSerializer`
    becomes `CaptureCollectionApiInput`): every view's `InputSerializer` stays its own."""

    def get_serializer_name(self, serializer, direction) -> str:
        return type(serializer).__qualname__.replace(".", "").lstrip("_")


class StationTokenScheme(OpenApiAuthenticationExtension):
    target_class = "core.authentication.StationTokenAuthentication"
    name = "stationToken"

    def get_security_definition(self, auto_schema) -> dict:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "A station's token: `Authorization: Token <station token>`.",
        }


# Bounds of integer inputs, so no number reaches the database that its column cannot hold
# (a bigger one is a 400, not a 500): ids are 64-bit, counts and seeds 32-bit.
ID_MAX = 2**63 - 1
INT_MAX = 2**31 - 1


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, for programs: e.g. too_large, not_found.")
    message = serializers.CharField(help_text="For people: what is wrong, in words.")
    fields = serializers.DictField(
        required=False, help_text="Per input field, what is wrong with it (400 invalid input)."
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


ERROR_DESCRIPTIONS = {
    400: "Bad input: a field, a parameter or the body is wrong.",
    401: "No token or login, or a bad one.",
    403: "Logged in, but not allowed to do this.",
    404: "Unknown object.",
    409: "Conflict with the object's current state.",
    410: "Gone: the file was deleted by the line's retention (the record stays).",
    413: "Too large: the body, the image or its pixels.",
    415: "Not an accepted image or media type.",
    429: "Too many requests: try again after Retry-After seconds.",
    503: "Not available now: try again after Retry-After seconds.",
}


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """`responses={200: X, **errors(404, 409)}`: the error body under each status."""
    return {
        status: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[status])
        for status in statuses
    }


_page_serializers: dict[str, Any] = {}


def paginated(serializer_class: type[serializers.Serializer], name: str) -> Any:
    """The body of a LimitOffsetPagination page of `serializer_class` items."""
    if name not in _page_serializers:
        _page_serializers[name] = inline_serializer(
            name,
            {
                "count": serializers.IntegerField(),
                "next": serializers.URLField(allow_null=True),
                "previous": serializers.URLField(allow_null=True),
                "results": serializer_class(many=True),
            },
        )
    return _page_serializers[name]


PAGE_PARAMETERS = [
    OpenApiParameter("limit", int, description="Items per page (default 50)."),
    OpenApiParameter("offset", int, description="Items to skip."),
]


def cursor_paginated(serializer_class: type[serializers.Serializer], name: str) -> Any:
    """The body of a KeysetPagination page (core/pagination.py): no count, the links."""
    if name not in _page_serializers:
        _page_serializers[name] = inline_serializer(
            name,
            {
                "next": serializers.URLField(
                    allow_null=True, help_text="The next page; null on the last one."
                ),
                "previous": serializers.URLField(
                    allow_null=True, help_text="The page before; null on the first one."
                ),
                "results": serializer_class(many=True),
            },
        )
    return _page_serializers[name]


CURSOR_PAGE_PARAMETERS = [
    OpenApiParameter("limit", int, description="Items per page (default 50, at most 500)."),
    OpenApiParameter(
        "cursor",
        str,
        description="Where the page starts: take it from a page's `next` or `previous` link "
        "(opaque; one this API did not give out is a 400).",
    ),
    OpenApiParameter(
        "offset",
        int,
        deprecated=True,
        description="Items to skip, at most 10,000 (older clients); follow `next` instead.",
    ),
]

_ERROR_REF = {"$ref": "#/components/schemas/Error"}


def _add(responses: dict, status: int) -> None:
    responses.setdefault(
        str(status),
        {
            "description": ERROR_DESCRIPTIONS[status],
            "content": {"application/json": {"schema": _ERROR_REF}},
        },
    )


def common_errors_hook(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook: the errors every operation of a kind can give."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    if "Error" not in schemas:
        schemas["Error"] = {
            "type": "object",
            "properties": {
                "error": {
                    "type": "object",
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "fields": {"type": "object", "additionalProperties": {}},
                    },
                    "required": ["code", "message"],
                }
            },
            "required": ["error"],
        }
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            if {} not in operation.get("security", [{}]):  # `{}` there: no login needed
                _add(responses, 401)
                _add(responses, 403)
            if operation.get("parameters") or "requestBody" in operation:
                _add(responses, 400)
            if "{" in path:
                _add(responses, 404)
            if method in ("post", "put", "patch", "delete"):
                _add(responses, 413)
            if "requestBody" in operation:
                _add(responses, 415)
            _add(responses, 429)
            _add(responses, 503)
    return result
