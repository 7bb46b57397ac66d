"""Rate limits: the API throttles per station, per user and per client address (counted in the
shared cache), the client address they and the login lockout key on, and the lockout's page.

Each throttle counts requests in fixed windows of its period (`1200/min`: this minute's count
under one cache key, raised with INCR on Redis, `cache.incr` on another cache) instead of DRF's
list of timestamps per client: an increment is one atomic operation on Redis, so web processes
never undercount by overwriting each other's list, and a busy station's bucket stays one integer.
Across a window's boundary a client may send up to twice the rate in a short burst; the rates are
far above real use.

A web process takes a client's requests from the shared count in leases of a hundredth of the
rate (`lease_size`; at most 100): one INCRBY lets it through that many requests of the window
without asking the cache again, and a bucket found full is refused without asking until its
window ends. At the station's default 1200/min that is one round trip in 12 captures instead of
one per capture (~0.8 ms of the station's wait, half of it waiting for Redis). Never more than
the rate gets through; at worst each process leaves part of its last lease unused and refuses
that much (a hundredth of the rate per process) early. Rates under 200 a period count one by one.

The cache may be down (Redis restarting, unreachable): a throttle then lets the request through
(fails open), does not ask the cache again in this process for CACHE_RETRY_SECONDS, so no request
waits on a dead Redis, and logs a warning at most every WARNING_INTERVAL_SECONDS. The limits are a
guard; the line must not stop for them.
"""

import logging
import math
import threading
import time

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.redis import RedisCache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from rest_framework.throttling import SimpleRateThrottle

from core.permissions import is_station

logger = logging.getLogger("core.throttling")

CACHE_RETRY_SECONDS = 5.0
WARNING_INTERVAL_SECONDS = 60.0


class CacheBreaker:
    """After a cache failure, the throttles of this process skip the cache for a while."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.skip_until = 0.0
        self.warned_at = -math.inf
        self.let_through = 0

    def allows(self) -> bool:
        if time.monotonic() < self.skip_until:
            self.let_through += 1
            return False
        return True

    def failed(self, exc: Exception) -> None:
        now = time.monotonic()
        self.skip_until = now + CACHE_RETRY_SECONDS
        self.let_through += 1
        if now - self.warned_at >= WARNING_INTERVAL_SECONDS:
            logger.warning(
                "throttle cache unavailable (%s: %s): API requests are let through unthrottled "
                "(%d since the last warning)",
                type(exc).__name__,
                str(exc).strip()[:200],
                self.let_through,
            )
            self.warned_at = now
            self.let_through = 0


breaker = CacheBreaker()

# A bucket this process found full: refused until its window ends.
FULL = -1


class Leases:
    """This process's leases on the shared buckets: for each bucket (a client's window), how
    many more requests the process may let through without asking the cache, or FULL."""

    KEPT = 10_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._left: dict[str, tuple[float, int]] = {}  # key -> (the window's end, left)

    def take(self, key: str) -> bool | None:
        """True: one request of the lease (now used); False: the bucket is full; None: no lease
        left, ask the cache."""
        with self._lock:
            ends, left = self._left.get(key, (0.0, 0))
            if left == FULL:
                return False
            if left == 0:
                return None
            self._left[key] = (ends, left - 1)
            return True

    def grant(self, key: str, *, ends: float, now: float, left: int) -> None:
        with self._lock:
            _, held = self._left.get(key, (0.0, 0))
            if left != FULL and held > 0:  # another thread's lease, taken at the same time
                left += held
            if left == 0:  # nothing to keep (a lease of one, used at once)
                self._left.pop(key, None)
                return
            if len(self._left) >= self.KEPT:
                self._left = {k: v for k, v in self._left.items() if v[0] > now}  # gone by
                if len(self._left) >= self.KEPT:
                    # As many clients at once: forgetting a lease only costs round trips (what
                    # it held stays counted, so it can refuse early, never let more through).
                    self._left.clear()
            self._left[key] = (ends, left)

    def __len__(self) -> int:
        return len(self._left)

    def forget(self) -> None:
        with self._lock:
            self._left.clear()


leases = Leases()


class WindowThrottle(SimpleRateThrottle):
    """A DRF throttle: at most `rate` requests per client in each window of the rate's period."""

    cache_format = "throttle:%(scope)s:%(ident)s"

    @property
    def cache(self):
        # The cache object itself (one per thread). DRF's class attribute is Django's `cache`
        # proxy, no RedisCache instance: with it `_redis_client` never saw Redis, and each
        # request took Django's `incr` instead (EXISTS, then INCRBY, on a client made anew).
        return caches[DEFAULT_CACHE_ALIAS]

    def get_rate(self) -> str | None:
        # Read at each request: DRF's own copy of DEFAULT_THROTTLE_RATES is taken at import, so
        # a changed setting (a test's) would not apply. A scope without a rate is not throttled.
        return settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {}).get(self.scope)

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        now = self.timer()
        window = int(now // self.duration)
        ends = (window + 1) * self.duration
        self.retry_after = ends - now
        key = f"{key}:{window}"
        leased = leases.take(key)
        if leased is not None:
            return leased
        size = self.lease_size()
        count = self._count(key, size)
        if count is None:
            return True  # the cache cannot say: let through, lease nothing
        granted = min(size, self.num_requests - (count - size))
        leases.grant(key, ends=ends, now=now, left=granted - 1 if granted > 0 else FULL)
        return granted > 0

    def lease_size(self) -> int:
        """The requests this process takes from a client's bucket at once: a hundredth of the
        rate, at most 100; one at a time under 200 a period."""
        return max(1, min(100, self.num_requests // 100))

    def wait(self) -> int:
        return max(1, math.ceil(self.retry_after))

    def _count(self, key: str, size: int = 1) -> int | None:
        """This window's requests so far with `size` more (this one and the rest of the lease);
        None when the cache cannot say."""
        if not breaker.allows():
            return None
        try:
            client = _redis_client(self.cache)
            if client is not None:
                # One round trip: the window's first request creates the key at 0 with its
                # expiry (SET NX, which outlives the window), then INCRBY counts. (EXPIRE NX
                # would need Redis 7.)
                stored_key = self.cache.make_and_validate_key(key)
                pipeline = client.pipeline(transaction=False)
                pipeline.set(stored_key, 0, ex=self.duration + 5, nx=True)
                pipeline.incrby(stored_key, size)
                return int(pipeline.execute()[1])
            try:
                return self.cache.incr(key, size)
            except ValueError:  # the window's first request: no key yet
                # The key outlives its window, so it cannot expire while the window is current.
                if self.cache.add(key, size, timeout=self.duration + 5):
                    return size
                return self.cache.incr(key, size)  # another process started the window first
        except Exception as exc:  # any failure of the cache lets the request through
            breaker.failed(exc)
            return None


def _redis_client(cache):
    """The redis-py client behind Django's Redis cache backend, or None for another backend.
    (Django's own `incr` asks twice: EXISTS, then INCRBY.) Made once per cache object (one per
    thread) on the backend's own connection pool: the backend makes a new one at each call,
    ~0.1 ms, as long as the round trip."""
    if not isinstance(cache, RedisCache):
        return None
    backend = cache._cache
    client = getattr(backend, "_throttle_client", None)
    if client is None:
        client = backend._throttle_client = backend.get_client(write=True)
    return client


# station id -> until when this process refused its requests (the end of the window it ran
# over): work started for a request before it is throttled is not started for these.
_stations_refused: dict[int, float] = {}
_STATIONS_REFUSED_KEPT = 10_000


class StationThrottle(WindowThrottle):
    """Per station (its token): two stations on one line have a bucket each."""

    scope = "station"

    def get_cache_key(self, request, view) -> str | None:
        if not is_station(request):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}

    def allow_request(self, request, view) -> bool:
        allowed = super().allow_request(request, view)
        if not allowed:
            if len(_stations_refused) >= _STATIONS_REFUSED_KEPT:
                _stations_refused.clear()
            _stations_refused[request.auth.pk] = time.monotonic() + self.retry_after
        return allowed


def station_refused_lately(station_id: int) -> bool:
    """Whether this process refused the station's requests in its current window."""
    until = _stations_refused.get(station_id)
    return until is not None and until > time.monotonic()


def stations_refused_forget() -> None:
    _stations_refused.clear()


class UserThrottle(WindowThrottle):
    """Per logged-in user, whichever browser or session the requests come from."""

    scope = "user"

    def get_cache_key(self, request, view) -> str | None:
        if is_station(request) or not request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class AnonymousThrottle(WindowThrottle):
    """Per client address, for the operations open without a login or token (the schema)."""

    scope = "anon"

    def get_cache_key(self, request, view) -> str | None:
        if request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": client_ip(request)}


def client_ip(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR or, behind TRUSTED_PROXY_COUNT proxies that each append
    to X-Forwarded-For, the address the outermost one saw. What lies further left in that header
    the client wrote itself, so it is never read; a header shorter than the proxies make (not
    from them) counts for nothing."""
    remote_addr = request.META.get("REMOTE_ADDR", "")
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return remote_addr
    header = request.META.get("HTTP_X_FORWARDED_FOR", "")
    forwarded = [part.strip() for part in header.split(",") if part.strip()]
    return forwarded[-proxies] if len(forwarded) >= proxies else remote_addr


def login_lockout_response(request: HttpRequest, *args, **kwargs) -> HttpResponse:
    """django-axes' answer to a login refused after too many failures (AXES_LOCKOUT_CALLABLE):
    429, Retry-After and a page that says what happened and what to do. The refused attempt
    started the cool-off again (AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT), so all of it is
    left. Axes passes the original response and the credentials too (in an order that depends on
    sync or async middleware); neither is needed."""
    seconds = math.ceil(settings.AXES_COOLOFF_TIME.total_seconds())
    response = render(
        request,
        "registration/locked_out.html",
        {"cool_off": _duration_in_words(seconds)},
        status=429,
    )
    response["Retry-After"] = str(seconds)
    return response


def _duration_in_words(seconds: int) -> str:
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour{'s' if hours != 1 else ''}"
    if seconds % 60 == 0:
        minutes = seconds // 60
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds} seconds"
