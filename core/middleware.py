"""Request middleware of the shared layer: a database that cannot be reached answers 503."""

from django.utils.deprecation import MiddlewareMixin

from core.errors import database_unavailable_response


class DatabaseUnavailableMiddleware(MiddlewareMixin):
    """A view (page, or async view outside DRF) whose database is down, restarting or out of
    pooled connections answers 503 with Retry-After instead of a 500: the client retries.

    DRF views get the same answer from core.errors.api_exception_handler; errors raised by
    other middleware (a session read) from core.errors.handler500.
    """

    def process_exception(self, request, exception):
        return database_unavailable_response(request, exception)
