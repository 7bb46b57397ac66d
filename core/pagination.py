"""The one paginator of list APIs: limit/offset, with bounds, so no query string reaches the
database as a number it cannot hold."""

from rest_framework.pagination import LimitOffsetPagination, _positive_int

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
