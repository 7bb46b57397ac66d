"""The station's capture POST served whole in one worker thread (core/asgi_threads.py), through
the same ASGI stack as the server (the body limit in front), without a server."""

import hashlib
import json
import threading

import pytest
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

from core.asgi_limits import BodySizeLimitMiddleware
from core.asgi_threads import ThreadedRoutes, wsgi_environ
from core.authentication import stations_forget
from core.throttling import WindowThrottle, stations_refused_forget
from inspection.apis.captures import EARLY_DECODE, capture_decode_early
from inspection.models import Capture
from inspection.services import captures as capture_services
from inspection.services.captures import image_decode
from tests.factories import (
    DeploymentFactory,
    ProductionLineFactory,
    image_bytes,
    station_with_token,
)
from tests.inspection.test_api_captures import upload
from tests.inspection.test_api_limits import run_asgi

pytestmark = pytest.mark.django_db(transaction=True)  # the request runs on another thread


def fallback_app(calls: list):
    async def app(scope, receive, send):
        calls.append((scope["method"], scope["path"]))
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"django's asgi handler"})

    return app


def capture_request(token: str, key: str, *, line: str = "L1") -> tuple[dict, bytes]:
    body = encode_multipart(
        BOUNDARY,
        {"image": upload(image_bytes()), "line": line, "idempotency_key": key},
    )
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/captures",
        "query_string": b"",
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
        "client": ("10.0.0.7", 50000),
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"authorization", f"Token {token}".encode()),
            (b"content-type", MULTIPART_CONTENT.encode()),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    return scope, body


@pytest.fixture
def station(fake_models):
    line = ProductionLineFactory(code="L1", automation_level="partial")
    deployment = DeploymentFactory(line=line, role="production")
    fake_models.set_score(deployment.model_version, 0.05)
    return station_with_token(line=line, name="S1")


def test_a_capture_post_runs_whole_in_a_worker_thread_and_is_stored(station):
    calls: list = []
    app = BodySizeLimitMiddleware(ThreadedRoutes(fallback_app(calls), threads=2))
    scope, body = capture_request(station.token, "k-thread")
    half = len(body) // 2
    sent = run_asgi(
        app,
        scope,
        [
            {"type": "http.request", "body": body[:half], "more_body": True},
            {"type": "http.request", "body": body[half:], "more_body": False},
        ],
    )
    assert calls == []  # not Django's ASGI handler
    start, answer = sent
    headers = dict(start["headers"])
    assert start["status"] == 201, answer["body"]
    assert headers[b"content-type"] == b"application/json"
    assert b"predict;dur=" in headers[b"server-timing"]
    assert b"x-request-id" in headers  # the middleware ran
    capture = json.loads(answer["body"])
    assert capture["verdict"] == "pass" and capture["decided_by"] == "model"
    stored = Capture.objects.get(pk=capture["id"])
    assert stored.idempotency_key == "k-thread" and stored.station_id == station.pk


def test_errors_keep_their_answer_and_the_same_key_gets_the_first_capture(station):
    app = ThreadedRoutes(fallback_app([]), threads=2)
    scope, body = capture_request(station.token, "k-1")
    first = run_asgi(app, scope, [{"type": "http.request", "body": body}])
    again = run_asgi(app, scope, [{"type": "http.request", "body": body}])
    assert (first[0]["status"], again[0]["status"]) == (201, 200)
    assert json.loads(first[1]["body"])["id"] == json.loads(again[1]["body"])["id"]
    scope, body = capture_request("not-a-token", "k-2")
    refused = run_asgi(app, scope, [{"type": "http.request", "body": body}])
    assert refused[0]["status"] == 401
    assert json.loads(refused[1]["body"])["error"]["code"]
    assert Capture.objects.count() == 1


def test_two_stations_at_once_are_served_in_parallel_threads(station, fake_models):
    other = station_with_token(line=station.line, name="S2")
    app = ThreadedRoutes(fallback_app([]), threads=2)
    answers: dict = {}

    def post(token, key):
        scope, body = capture_request(token, key)
        answers[key] = run_asgi(app, scope, [{"type": "http.request", "body": body}])[0]["status"]

    workers = [
        threading.Thread(target=post, args=(s.token, f"k-{s.name}")) for s in (station, other)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert answers == {"k-S1": 201, "k-S2": 201}
    assert Capture.objects.count() == 2


def test_a_body_cut_short_by_a_disconnect_stores_nothing_and_answers_nothing(station):
    app = ThreadedRoutes(fallback_app([]), threads=2)
    scope, body = capture_request(station.token, "k-gone")
    sent = run_asgi(app, scope, [{"type": "http.request", "body": body[:100], "more_body": True}])
    assert sent == []
    assert Capture.objects.count() == 0


def test_an_oversized_capture_body_is_still_refused_by_the_limit_in_front(station, settings):
    settings.CAPTURE_MAX_BYTES = 1000
    settings.CAPTURE_FORM_OVERHEAD_BYTES = 100
    app = BodySizeLimitMiddleware(ThreadedRoutes(fallback_app([]), threads=2))
    scope, body = capture_request(station.token, "k-big")
    scope["headers"] = [h for h in scope["headers"] if h[0] != b"content-length"]  # streamed
    chunks = [
        {"type": "http.request", "body": body[i : i + 500], "more_body": True}
        for i in range(0, len(body), 500)
    ]
    sent = run_asgi(app, scope, chunks)
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [413]
    assert Capture.objects.count() == 0


def test_other_requests_stay_on_djangos_asgi_handler():
    calls: list = []
    app = ThreadedRoutes(fallback_app(calls), threads=1)
    for method, path in [("GET", "/api/v1/captures"), ("POST", "/api/v1/captures/x/claim")]:
        scope = {"type": "http", "method": method, "path": path, "headers": []}
        assert run_asgi(app, scope, [{"type": "http.request", "body": b""}])[0]["status"] == 299
    assert calls == [("GET", "/api/v1/captures"), ("POST", "/api/v1/captures/x/claim")]


def test_the_environ_carries_headers_address_and_the_body_as_read():
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/base/api/v1/captures",
        "root_path": "/base",
        "query_string": b"a=1",
        "headers": [
            (b"content-type", b"multipart/form-data; boundary=x"),
            (b"content-length", b"999"),
            (b"x-forwarded-for", b"1.1.1.1"),
            (b"x-forwarded-for", b"2.2.2.2"),
        ],
        "client": ("10.0.0.9", 1234),
        "server": ("example.org", 443),
        "scheme": "https",
    }
    environ = wsgi_environ(scope, b"hello")
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/base", "/api/v1/captures")
    assert environ["QUERY_STRING"] == "a=1"
    assert environ["CONTENT_TYPE"] == "multipart/form-data; boundary=x"
    assert environ["CONTENT_LENGTH"] == "5"  # what was read, not what was announced
    assert environ["HTTP_X_FORWARDED_FOR"] == "1.1.1.1,2.2.2.2"
    assert environ["REMOTE_ADDR"] == "10.0.0.9"
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("example.org", "443")
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["wsgi.input"].read() == b"hello"


# --- The capture's image decoded while the framework reads the request ---


@pytest.fixture
def stations_kept(settings):
    """Stations found by their token are kept (tests otherwise look them up every time)."""
    settings.STATION_AUTH_CACHE_SECONDS = 60
    stations_forget()
    stations_refused_forget()
    yield
    stations_forget()
    stations_refused_forget()


class Decodes(list):
    """Every decoding of a posted image, and the thread each ran in."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[threading.Thread] = []


@pytest.fixture
def decodes(monkeypatch) -> Decodes:
    seen = Decodes()

    def counted(data):
        seen.append(data)
        seen.threads.append(threading.current_thread())
        return image_decode(data)

    monkeypatch.setattr(capture_services, "image_decode", counted)
    return seen


def early_app(started: list):
    def early(environ, body):
        work = capture_decode_early(environ, body)
        started.append(environ.get(EARLY_DECODE))
        return work

    return ThreadedRoutes(fallback_app([]), threads=2, early=early)


def test_a_known_stations_image_is_decoded_once_and_early(station, stations_kept, decodes):
    started: list = []
    app = early_app(started)
    answers = []
    for key in ("k-1", "k-2"):
        scope, body = capture_request(station.token, key)
        answers.append(run_asgi(app, scope, [{"type": "http.request", "body": body}]))
    # The first capture makes the station known to the process; the second is decoded as it
    # comes in, once, and decided as the first was.
    assert started[0] is None and started[1] is not None
    assert started[1].data == image_bytes()
    assert decodes == [image_bytes(), image_bytes()]
    # The first in the request's own thread; the second on the event loop (here, the test's
    # thread), while the request went through the framework in its thread.
    assert decodes.threads[0] is not threading.current_thread()
    assert decodes.threads[1] is threading.current_thread()
    first, second = (json.loads(sent[1]["body"]) for sent in answers)
    assert [sent[0]["status"] for sent in answers] == [201, 201]
    assert second["model"]["score"] == first["model"]["score"]
    assert second["image_sha256"] == first["image_sha256"]
    assert Capture.objects.count() == 2


def test_an_unreadable_image_decoded_early_gets_the_same_refusal(station, stations_kept):
    started: list = []
    app = early_app(started)
    scope, body = capture_request(station.token, "k-known")
    assert run_asgi(app, scope, [{"type": "http.request", "body": body}])[0]["status"] == 201
    cut = image_bytes()[:600]  # a JPEG cut short
    body = encode_multipart(
        BOUNDARY, {"image": upload(cut), "line": "L1", "idempotency_key": "k-cut"}
    )
    start, answer = run_asgi(app, scope, [{"type": "http.request", "body": body}])
    assert started[1] is not None and started[1].data == cut
    assert start["status"] == 400
    assert json.loads(answer["body"])["error"]["code"] == "truncated"
    assert Capture.objects.count() == 1


def test_nothing_is_decoded_early_for_an_unknown_token_or_a_throttled_station(
    station, stations_kept, settings, monkeypatch, django_assert_num_queries
):
    scope, body = capture_request("not-a-token", "k-1")
    environ = wsgi_environ(scope, body)
    with django_assert_num_queries(0):  # the database is not asked on the event loop
        capture_decode_early(environ, body)
    assert EARLY_DECODE not in environ

    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "station": "1/min",
        },
    }
    monkeypatch.setattr(WindowThrottle, "timer", staticmethod(lambda: 60.0 * 29_000_000 + 5))
    app = ThreadedRoutes(fallback_app([]), threads=2)
    statuses = []
    for key in ("k-1", "k-2"):
        scope, body = capture_request(station.token, key)
        statuses.append(run_asgi(app, scope, [{"type": "http.request", "body": body}])[0]["status"])
    assert statuses == [201, 429]
    scope, body = capture_request(station.token, "k-3")
    environ = wsgi_environ(scope, body)
    capture_decode_early(environ, body)
    assert EARLY_DECODE not in environ  # refused in this window: no work before it is refused


def test_an_early_decoding_of_other_bytes_is_not_used(station, decodes):
    other = image_bytes(128, 72, seed=5)
    early = capture_services.EarlyDecode(other)
    result = capture_services.capture_ingest(
        station=station,
        line_code="L1",
        idempotency_key="k-other",
        image_data=image_bytes(),
        early=early,
    )
    assert result.capture.image_sha256 == hashlib.sha256(image_bytes()).hexdigest()
    assert (result.capture.width, result.capture.height) == (256, 144)  # not the other's
    assert image_bytes() in decodes  # decoded after all


def test_early_work_that_fails_is_logged_and_the_capture_still_answered(station, caplog):
    def broken():
        raise RuntimeError("early work broke")

    app = ThreadedRoutes(fallback_app([]), threads=2, early=lambda environ, body: broken)
    scope, body = capture_request(station.token, "k-1")
    start, answer = run_asgi(app, scope, [{"type": "http.request", "body": body}])
    assert start["status"] == 201
    assert json.loads(answer["body"])["image_sha256"] == hashlib.sha256(image_bytes()).hexdigest()
    assert "early work for POST /api/v1/captures failed" in caplog.text


def test_nothing_starts_early_while_another_capture_is_in_flight(station, stations_kept):
    started: list = []
    app = early_app(started)
    scope, body = capture_request(station.token, "k-1")
    assert run_asgi(app, scope, [{"type": "http.request", "body": body}])[0]["status"] == 201
    app.in_flight = 1  # another station's capture is being served: the cores are busy
    scope, body = capture_request(station.token, "k-2")
    assert run_asgi(app, scope, [{"type": "http.request", "body": body}])[0]["status"] == 201
    assert len(started) == 1  # only the first was offered (when the station was not known)
    app.in_flight = 0
    scope, body = capture_request(station.token, "k-3")
    assert run_asgi(app, scope, [{"type": "http.request", "body": body}])[0]["status"] == 201
    assert started[-1] is not None and app.in_flight == 0
