"""API throttles per station, per user and per client address, counted in the shared cache: 429
in our error shape with Retry-After, and requests let through when the cache is down. The login
lockout: 429 with Retry-After and a page for a username and address after repeated failures."""

import logging
import threading
import uuid
from datetime import timedelta
from types import SimpleNamespace
from urllib.parse import urlparse

import pytest
import redis
from asgiref.sync import async_to_sync
from axes.models import AccessAttempt
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db.models import F
from django.test import AsyncClient, Client, RequestFactory
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory
from rest_framework.views import APIView

from config.settings import env_rate
from core import throttling
from tests.factories import ProductionLineFactory, UserFactory, station_with_token

pytestmark = pytest.mark.django_db

WINDOW_START = 60.0 * 29_000_000  # the start of a minute, as time.time() counts
PASSWORD = "pw-for-tests"  # UserFactory's
LOCKED_OUT = (
    "Too many failed logins for this account from this address; try again in 15 minutes "
    "or ask an admin to unlock it."
)


@pytest.fixture(autouse=True)
def _breaker_closed():
    """A test that took the cache down must not leave the next one unthrottled."""
    throttling.breaker.reset()
    yield
    throttling.breaker.reset()


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def clock(monkeypatch):
    """The throttles' time, 20 s into a minute: no window ends in the middle of a test."""
    now = SimpleNamespace(value=WINDOW_START + 20)
    monkeypatch.setattr(throttling.WindowThrottle, "timer", staticmethod(lambda: now.value))
    return now


@pytest.fixture
def rates(settings):
    def set_rates(**rates: str) -> None:
        current = settings.REST_FRAMEWORK
        settings.REST_FRAMEWORK = {
            **current,
            "DEFAULT_THROTTLE_RATES": {**current["DEFAULT_THROTTLE_RATES"], **rates},
        }

    return set_rates


def as_station(station) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {station.token}")
    return client


def as_user(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_a_station_over_its_rate_gets_429_and_another_station_on_its_line_gets_through(
    rates, clock
):
    rates(station="3/min")
    line = ProductionLineFactory()
    noisy, quiet = station_with_token(line=line), station_with_token(line=line)
    # Two clients of one station (two web processes would see the same): one bucket.
    first, second = as_station(noisy), as_station(noisy)
    assert [first.get("/api/v1/lines").status_code for _ in range(2)] == [200, 200]
    assert second.get("/api/v1/lines").status_code == 200

    refused = second.get("/api/v1/lines")
    assert refused.status_code == 429
    assert refused["Retry-After"] == "40"  # the minute's window ends in 40 s
    assert refused.json() == {
        "error": {"code": "throttled", "message": "Too many requests; retry in 40 s."}
    }
    assert as_station(quiet).get("/api/v1/lines").status_code == 200

    clock.value += 40
    assert first.get("/api/v1/lines").status_code == 200


def test_a_user_over_the_rate_gets_429_and_another_user_does_not(rates, clock):
    rates(user="2/min")
    ines, ivan = UserFactory(roles=["inspector"]), UserFactory(roles=["inspector"])
    assert [as_user(ines).get("/api/v1/lines").status_code for _ in range(2)] == [200, 200]
    refused = as_user(ines).get("/api/v1/lines")
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) == 40
    assert refused.json()["error"]["code"] == "throttled"
    assert as_user(ivan).get("/api/v1/lines").status_code == 200


class OpenApi(APIView):
    """An operation open without login, under the default throttles (as the schema is)."""

    permission_classes = [AllowAny]

    def get(self, request):
        return Response({"ok": True})


def test_anonymous_requests_are_counted_per_client_address(rates, clock):
    rates(anon="2/min")
    factory = APIRequestFactory()

    def status_from(address: str) -> int:
        return OpenApi.as_view()(factory.get("/api/v1/open", REMOTE_ADDR=address)).status_code

    assert [status_from("10.0.0.1") for _ in range(3)] == [200, 200, 429]
    assert status_from("10.0.0.2") == 200


def test_behind_trusted_proxies_the_address_comes_from_the_outermost_proxy(settings):
    factory = RequestFactory()
    spoofed = factory.get("/", REMOTE_ADDR="10.9.9.9", HTTP_X_FORWARDED_FOR="6.6.6.6, 192.0.2.7")
    assert throttling.client_ip(spoofed) == "10.9.9.9"  # no proxy trusted: REMOTE_ADDR

    settings.TRUSTED_PROXY_COUNT = 1
    assert throttling.client_ip(spoofed) == "192.0.2.7"  # what the client wrote is not read
    not_from_the_proxy = factory.get("/", REMOTE_ADDR="10.9.9.9")
    assert throttling.client_ip(not_from_the_proxy) == "10.9.9.9"

    settings.TRUSTED_PROXY_COUNT = 2
    assert throttling.client_ip(spoofed) == "6.6.6.6"


def test_the_probes_are_not_throttled(rates, clock):
    rates(anon="1/min")
    assert [Client().get("/healthz").status_code for _ in range(3)] == [200, 200, 200]


def test_throttles_let_requests_through_when_the_cache_is_down(settings, rates, caplog):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    rates(station="1/min")
    station = station_with_token()
    with caplog.at_level(logging.WARNING, logger="core.throttling"):
        answers = [as_station(station).get("/api/v1/lines").status_code for _ in range(3)]
    assert answers == [200, 200, 200]
    warnings = [record for record in caplog.records if record.name == "core.throttling"]
    assert len(warnings) == 1  # not one per request
    assert "unthrottled" in warnings[0].getMessage()


@pytest.mark.parametrize("value", ["1200", "0/min", "ten/min", "5/fortnight"])
def test_a_malformed_rate_fails_at_start_up(monkeypatch, value):
    monkeypatch.setenv("THROTTLE_STATION_RATE", value)
    with pytest.raises(ImproperlyConfigured, match="THROTTLE_STATION_RATE"):
        env_rate("THROTTLE_STATION_RATE", "1200/min")


@pytest.mark.integration
def test_the_counts_are_kept_in_redis(redis_url, settings, rates, clock):
    url = urlparse(redis_url)._replace(path="/14").geturl()  # a database of this test's own
    server = redis.Redis.from_url(url)
    server.flushdb()
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "throttle-test",
        }
    }
    try:
        rates(station="2/min")
        station = station_with_token()
        answers = [as_station(station).get("/api/v1/lines").status_code for _ in range(3)]
        assert answers == [200, 200, 429]
        keys = server.keys(f"throttle-test:*:throttle:station:{station.pk}:*")
        assert len(keys) == 1
        assert int(server.get(keys[0])) == 3
        assert 0 < server.ttl(keys[0]) <= 65  # gone soon after its minute
    finally:
        server.flushdb()


@pytest.mark.integration
def test_a_request_is_counted_in_one_round_trip_to_redis(redis_url, settings, rates, clock):
    """The count is one pipelined round trip: SET NX (the window's key and its expiry), INCRBY.
    Not Django's `cache.incr`, which asks twice (EXISTS, then INCRBY) and took a new client
    at each call: that was what every request did while the throttle held Django's `cache`
    proxy, in which it could not see Redis."""
    url = urlparse(redis_url)._replace(path="/14").geturl()
    server = redis.Redis.from_url(url)
    prefix = f"throttle-trip-{uuid.uuid4().hex[:8]}"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": prefix,
        }
    }
    rates(station="100/min")
    station = station_with_token()
    seen: list[str] = []
    listening = threading.Event()

    def watch() -> None:
        with server.monitor() as monitor:
            listening.set()
            while True:
                command = monitor.next_command()["command"]
                if command == f"ECHO {prefix}-done":
                    return
                if prefix in command:
                    seen.append(command.split()[0])

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert listening.wait(10)
    try:
        answers = [as_station(station).get("/api/v1/lines").status_code for _ in range(2)]
    finally:
        server.echo(f"{prefix}-done")
        watcher.join(10)
        for key in server.scan_iter(f"{prefix}:*"):
            server.delete(key)
    assert answers == [200, 200]
    assert seen == ["SET", "INCRBY", "SET", "INCRBY"]


class OneBucket(throttling.WindowThrottle):
    """The station's rate, one bucket for every request: a web process's view of it."""

    scope = "station"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": "one"}


def allowed(count: int) -> int:
    request = SimpleNamespace(META={})
    return sum(OneBucket().allow_request(request, None) for _ in range(count))


@pytest.fixture
def asked(monkeypatch) -> list[int]:
    """The lease sizes a throttle asks the cache for, one per round trip."""
    sizes: list[int] = []
    count = throttling.WindowThrottle._count
    monkeypatch.setattr(
        throttling.WindowThrottle,
        "_count",
        lambda self, key, size=1: sizes.append(size) or count(self, key, size),
    )
    return sizes


def test_a_process_takes_a_hundredth_of_the_rate_at_a_time_and_asks_again_when_it_is_spent(
    rates, clock, asked
):
    rates(station="1000/min")
    assert allowed(25) == 25
    assert asked == [10, 10, 10]  # three round trips for 25 requests
    bucket = f"throttle:station:one:{int(clock.value // 60)}"
    assert cache.get(bucket) == 30  # leased: 5 still this process's


def test_never_more_than_the_rate_gets_through_two_processes_sharing_a_bucket(
    rates, clock, monkeypatch
):
    rates(station="301/min")  # leases of 3
    first, second = throttling.Leases(), throttling.Leases()
    through = []
    for turn in range(400):  # the processes take turns, one request each
        monkeypatch.setattr(throttling, "leases", first if turn % 2 else second)
        through.append(allowed(1))
    assert sum(through) == 301  # the last lease was cut to what was left of the rate
    assert through[:301] == [1] * 301


def test_a_lease_taken_before_the_bucket_filled_is_still_used(rates, clock, monkeypatch):
    rates(station="301/min")
    first, second = throttling.Leases(), throttling.Leases()
    monkeypatch.setattr(throttling, "leases", first)
    assert allowed(1) == 1  # takes 3, uses 1
    monkeypatch.setattr(throttling, "leases", second)
    assert allowed(400) == 298  # the rest of the rate; refused after, without asking
    monkeypatch.setattr(throttling, "leases", first)
    assert allowed(5) == 2  # what was left of its lease: 301 in all


def test_a_full_bucket_is_refused_without_asking_the_cache_until_its_window_ends(
    rates, clock, asked
):
    rates(station="2/min")
    assert allowed(10) == 2
    assert asked == [1, 1, 1]  # one at a time under 200/min: two let through, one found full
    clock.value += 40  # the next minute
    assert allowed(1) == 1


def test_a_process_keeps_only_leases_with_something_left_and_never_more_than_it_may(
    monkeypatch,
):
    leases = throttling.Leases()
    leases.grant("one-by-one:1", ends=60.0, now=1.0, left=0)  # a lease of one, used at once
    assert len(leases) == 0 and leases.take("one-by-one:1") is None
    monkeypatch.setattr(throttling.Leases, "KEPT", 3)
    for client in range(5):  # more clients at once than it keeps, all in the current window
        leases.grant(f"client-{client}:1", ends=60.0, now=1.0, left=5)
    assert len(leases) <= 3
    assert leases.take("client-4:1") is True  # the newest lease is kept
    while len(leases) < 3:
        leases.grant(f"client-{len(leases) + 10}:1", ends=60.0, now=1.0, left=5)
    leases.grant("client-9:2", ends=120.0, now=61.0, left=5)  # the window before is gone
    assert len(leases) == 1 and leases.take("client-9:2") is True


def log_in(username: str, password: str, address: str = "10.1.1.1"):
    return Client().post(
        "/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address
    )


def test_five_wrong_passwords_lock_that_account_from_that_address_even_with_the_right_one():
    UserFactory(username="ines")
    assert [log_in("ines", "wrong").status_code for _ in range(4)] == [200] * 4
    assert log_in("ines", "wrong").status_code == 429

    refused = log_in("ines", PASSWORD)
    assert refused.status_code == 429
    assert refused["Retry-After"] == "900"
    page = refused.content.decode()
    assert LOCKED_OUT in page
    assert "python manage.py axes_reset_username NAME" in page
    assert "_auth_user_id" not in refused.wsgi_request.session


def test_the_lockout_leaves_other_accounts_and_other_addresses_alone():
    UserFactory(username="ines")
    UserFactory(username="ivan")
    for _ in range(5):
        log_in("ines", "wrong", address="10.1.1.1")
    assert log_in("ines", PASSWORD, address="10.1.1.1").status_code == 429
    assert log_in("ivan", PASSWORD, address="10.1.1.1").status_code == 302
    assert log_in("ines", PASSWORD, address="10.2.2.2").status_code == 302


def test_the_lockout_ends_after_the_cool_off_or_when_an_admin_unlocks():
    UserFactory(username="ines")
    for _ in range(5):
        log_in("ines", "wrong")
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=16))
    assert log_in("ines", PASSWORD).status_code == 302

    for _ in range(5):
        log_in("ines", "wrong")
    assert log_in("ines", PASSWORD).status_code == 429
    call_command("axes_reset_username", "ines")
    assert log_in("ines", PASSWORD).status_code == 302


def test_a_successful_login_clears_the_failures():
    UserFactory(username="ines")
    for _ in range(4):
        log_in("ines", "wrong")
    assert log_in("ines", PASSWORD).status_code == 302
    assert [log_in("ines", "wrong").status_code for _ in range(4)] == [200] * 4
    assert log_in("ines", PASSWORD).status_code == 302


def test_the_lockout_page_is_the_same_under_asgi():
    """uvicorn runs the middleware asynchronously, where axes calls the page's function with
    other arguments."""
    UserFactory(username="ines")
    post = async_to_sync(AsyncClient().post)
    for _ in range(5):
        post("/accounts/login/", {"username": "ines", "password": "wrong"})
    refused = post("/accounts/login/", {"username": "ines", "password": PASSWORD})
    assert refused.status_code == 429
    assert refused["Retry-After"] == "900"
    assert LOCKED_OUT in refused.content.decode()
