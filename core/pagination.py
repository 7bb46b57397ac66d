"""The paginators of list APIs: limit/offset with bounds (so no query string reaches the
database as a number it cannot hold), and keyset pages for lists that grow to millions."""

import base64
import json
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Q
from rest_framework.pagination import LimitOffsetPagination, _positive_int
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.utils.urls import remove_query_param, replace_query_param

from core.errors import ApplicationError

# Larger offsets than any table has rows; SQL OFFSET must fit in a signed 64-bit integer.
MAX_OFFSET = 2**62


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """`?limit=` (default PAGE_SIZE, at most `max_limit`) and `?offset=`; a bad number falls
    back to the default, as DRF does, and an offset past MAX_OFFSET is taken as MAX_OFFSET."""

    max_limit = 500

    def get_offset(self, request) -> int:
        try:
            return _positive_int(request.query_params[self.offset_query_param], cutoff=MAX_OFFSET)
        except (KeyError, ValueError):
            return 0


class KeysetPagination:
    """`?limit=` and `?cursor=`: pages of a list in a fixed order on a unique key (by default
    newest first: `-received_at`, then `id`), each read as an index range from where the last
    page ended. No COUNT and no OFFSET: the thousandth page costs what the first does, and rows
    that arrive while a client pages never shift what it sees (newer rows sort before its first
    page, not into the later ones). The page is `{"next", "previous", "results"}`; `next` is
    null on the last page.

    Cursors are opaque to clients (base64 of the direction and the key of the row at the
    page's edge); one that is not ours is a 400. `?offset=` still works for old clients, up to
    MAX_LEGACY_OFFSET rows (deeper, use the links): its `next` link continues by cursor.
    """

    limit_query_param = "limit"
    cursor_query_param = "cursor"
    offset_query_param = "offset"
    max_limit = 500
    MAX_LEGACY_OFFSET = 10_000
    MAX_CURSOR_LENGTH = 400

    def __init__(self, ordering: tuple[str, str] = ("-received_at", "id")) -> None:
        self.keys = [(name.lstrip("-"), name.startswith("-")) for name in ordering]
        self.ordering = ordering

    # --- the page ---

    def paginate_queryset(self, queryset, request, view=None) -> list:
        self.request = request
        self.model = queryset.model
        limit = self.get_limit(request)
        cursor = request.query_params.get(self.cursor_query_param)
        if cursor:
            forward, values = self.decode(cursor)
            rows = list(
                queryset.filter(self._beyond(values, forward)).order_by(*self._order(forward))[
                    : limit + 1
                ]
            )
            more = len(rows) > limit
            rows = rows[:limit]
            if not forward:
                rows.reverse()
            # Coming from a row, there are rows on that side of the page.
            self.has_next, self.has_previous = (more, True) if forward else (True, more)
            self.edge = values
        else:
            offset = self.get_offset(request)
            rows = list(queryset.order_by(*self.ordering)[offset : offset + limit + 1])
            self.has_next, self.has_previous = len(rows) > limit, offset > 0
            rows = rows[:limit]
            self.edge = None
        self.rows = rows
        return rows

    def get_paginated_response(self, data) -> Response:
        return Response(
            {"next": self.get_next_link(), "previous": self.get_previous_link(), "results": data}
        )

    def get_next_link(self) -> str | None:
        if not self.has_next or not self.rows:
            return None
        return self._link(self.encode(self.key_of(self.rows[-1]), forward=True))

    def get_previous_link(self) -> str | None:
        if not self.has_previous:
            return None
        if self.rows:
            return self._link(self.encode(self.key_of(self.rows[0]), forward=False))
        if self.edge is not None:  # past the end: the page before where the client stood
            return self._link(self.encode(self.edge, forward=False))
        return None

    def _link(self, cursor: str) -> str:
        url = self.request.build_absolute_uri()
        url = remove_query_param(url, self.offset_query_param)
        return replace_query_param(url, self.cursor_query_param, cursor)

    # --- parameters ---

    def get_limit(self, request) -> int:
        default = api_settings.PAGE_SIZE or 50
        try:
            return _positive_int(
                request.query_params[self.limit_query_param], strict=True, cutoff=self.max_limit
            )
        except (KeyError, ValueError):
            return default

    def get_offset(self, request) -> int:
        try:
            offset = _positive_int(request.query_params[self.offset_query_param], cutoff=MAX_OFFSET)
        except (KeyError, ValueError):
            return 0
        if offset > self.MAX_LEGACY_OFFSET:
            raise ApplicationError(
                f"offset may be at most {self.MAX_LEGACY_OFFSET:,}: page further by following "
                "the `next` link (its cursor starts where the page ends).",
                code="offset_too_deep",
            )
        return offset

    # --- keys and cursors ---

    def key_of(self, row: Any) -> list[str]:
        return [self.model._meta.get_field(name).value_to_string(row) for name, _ in self.keys]

    def cursor_for(self, row: Any, *, model: Any = None, forward: bool = True) -> str:
        """The cursor of the page that starts after `row` (before it with forward=False)."""
        self.model = model or type(row)
        return self.encode(self.key_of(row), forward=forward)

    def encode(self, key: list[str], *, forward: bool) -> str:
        text = json.dumps({"d": "next" if forward else "previous", "k": key}, separators=(",", ":"))
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    def decode(self, cursor: str) -> tuple[bool, list[Any]]:
        """(forward, key values) of a cursor this paginator made; else a 400."""
        try:
            if len(cursor) > self.MAX_CURSOR_LENGTH:
                raise ValueError("too long")
            data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            direction, key = data["d"], data["k"]
            if direction not in ("next", "previous") or not isinstance(key, list):
                raise ValueError("not a cursor")
            if len(key) != len(self.keys) or not all(isinstance(v, str) for v in key):
                raise ValueError("not a cursor")
            values = [
                self.model._meta.get_field(name).to_python(value)
                for (name, _), value in zip(self.keys, key, strict=True)
            ]
            if any(value is None for value in values):
                raise ValueError("empty key")
        except (ValueError, TypeError, KeyError, UnicodeError, DjangoValidationError):
            raise ApplicationError(
                "The cursor is not one this API gave out: follow the `next` and `previous` "
                "links as they are.",
                code="invalid_cursor",
            ) from None
        return direction == "next", values

    def _order(self, forward: bool) -> list[str]:
        if forward:
            return list(self.ordering)
        return [name if descending else f"-{name}" for name, descending in self.keys]

    def _beyond(self, values: list[Any], forward: bool) -> Q:
        """Rows after (forward) or before the key in the list's order. The first key's
        inclusive bound comes first so the database reads one index range from it; the
        second key only orders rows that share the first one's value."""
        (first, first_descending), (second, second_descending) = self.keys
        first_op = "lt" if first_descending == forward else "gt"
        second_op = "lt" if second_descending == forward else "gt"
        return Q(**{f"{first}__{first_op}e": values[0]}) & (
            Q(**{f"{first}__{first_op}": values[0]}) | Q(**{f"{second}__{second_op}": values[1]})
        )
