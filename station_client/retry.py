"""When a request to the server is tried again, and after how long.

Retried: a connection that fails or times out, and the answers that mean "not now" (429
throttled, 503 database or object store unavailable, 507 storage full, and 502/504 from a proxy
whose server is down), each after an exponential backoff with jitter, or the server's
Retry-After (capped). Never retried: any other 4xx (the request itself is wrong) and 500 (a
bug a resend will not fix).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

logger = logging.getLogger("station_client")

RETRY_STATUSES = frozenset({429, 502, 503, 504, 507})
# The failures of the connection itself; a bad URL (UnsupportedProtocol) is not among them.
RETRY_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # in all, the first included
    base_delay: float = 0.25  # seconds before the second attempt (before jitter)
    max_delay: float = 8.0
    max_retry_after: float = 30.0  # a longer Retry-After is cut to this

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number `retry` (0 for the first retry)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        ceiling = min(self.max_delay, self.base_delay * 2**retry)
        # "Equal jitter": at least half the backoff, so stations that failed together spread
        # out without any of them hammering the server at once.
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from now; None if absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class ServerUnavailable(Exception):
    """Every attempt failed to connect, timed out or was answered "not now"."""

    def __init__(self, message: str, *, response: httpx.Response | None = None) -> None:
        super().__init__(message)
        self.response = response


def _describe(response: httpx.Response) -> str:
    try:
        error = response.json().get("error", {})
        return f"HTTP {response.status_code} {error.get('code')}: {error.get('message')}"
    except (ValueError, AttributeError):
        return f"HTTP {response.status_code}"


def request_with_retries(
    send: Callable[[], httpx.Response],
    *,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    deadline: float | None = None,
) -> httpx.Response:
    """`send()` until it gets an answer that is not "not now"; that answer (2xx or a final
    4xx/5xx) is returned. Raises ServerUnavailable when the attempts (or the monotonic
    `deadline`) run out first."""
    rng = rng or random.Random()
    last = "no attempt made"
    response: httpx.Response | None = None
    for attempt in range(policy.attempts):
        retry_after = None
        try:
            response = send()
        except RETRY_ERRORS as exc:
            response = None
            last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        else:
            if response.status_code not in RETRY_STATUSES:
                return response
            last = _describe(response)
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        if attempt + 1 >= policy.attempts:
            break
        wait = policy.delay(attempt, retry_after, rng)
        if deadline is not None and time.monotonic() + wait > deadline:
            break
        logger.info("attempt %d failed (%s); retrying in %.2f s", attempt + 1, last, wait)
        sleep(wait)
    raise ServerUnavailable(
        f"the server could not be reached or was unavailable ({last})", response=response
    )
