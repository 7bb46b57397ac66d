"""Bad input and resource limits on the station API: pixels, multi-picture JPEGs, metadata,
oversized or malformed bodies, filters, concurrent inference, and the long poll without Redis.
Every refusal is a clear 4xx (or a retryable 503), never a 500, and stores nothing."""

import io
import json
import threading
import time

import numpy as np
import pytest
from PIL import Image
from rest_framework.test import APIClient

from inspection import services
from inspection.apis import captures as capture_apis
from inspection.models import Capture
from models_registry import serving
from tests.factories import (
    DecisionFactory,
    DeploymentFactory,
    ProductionLineFactory,
    UserFactory,
    image_bytes,
    station_with_token,
)
from tests.inspection.test_api_captures import assert_nothing_stored, client_for, post_capture

pytestmark = pytest.mark.django_db


@pytest.fixture
def line():
    return ProductionLineFactory(code="L1", automation_level="partial")


@pytest.fixture
def station(line):
    return station_with_token(line=line, name="S1")


@pytest.fixture
def deployment(line, fake_models):
    return DeploymentFactory(line=line, role="production")


def flat_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


def mpo(first: tuple[int, int, int], second: tuple[int, int, int]) -> bytes:
    frames = [Image.fromarray(np.full((72, 128, 3), c, np.uint8)) for c in (first, second)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="MPO", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


# --- Pixels and formats ---


def test_a_small_flat_png_of_36_megapixels_is_refused_from_its_header(
    station, deployment, fake_models
):
    data = flat_png(6000, 6000)
    assert len(data) < 100_000  # a few dozen KB that would decode to 108 MB of RGB
    started = time.monotonic()
    response = post_capture(client_for(station), data=data)
    assert time.monotonic() - started < 2
    assert_nothing_stored(response, 413, "too_large")
    assert "6000x6000" in response.json()["error"]["message"]
    assert not fake_models.predictors or all(p.calls == 0 for p in fake_models.predictors.values())


def test_the_pixel_cap_is_a_setting(station, deployment, settings):
    settings.CAPTURE_MAX_PIXELS = 100 * 100
    response = post_capture(client_for(station), data=image_bytes(128, 96))
    assert_nothing_stored(response, 413, "too_large")
    settings.CAPTURE_MAX_PIXELS = 128 * 96
    assert post_capture(client_for(station), data=image_bytes(128, 96)).status_code == 201


def test_a_multi_picture_jpeg_is_accepted_as_its_first_frame(station, deployment):
    data = mpo((200, 30, 30), (30, 200, 30))
    assert Image.open(io.BytesIO(data)).format == "MPO"
    response = post_capture(client_for(station), data=data)
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["width"], body["height"]) == (128, 72)
    capture = Capture.objects.get()
    assert capture.image_format == "jpg"
    assert capture.image_stats  # decoded: the first (red) frame
    from vision.images import decode_image

    assert decode_image(data)[36, 64, 0] > 150


# --- Metadata ---


def test_metadata_within_the_limits_is_kept(station, deployment):
    nested = {"a": {"b": {"c": {"d": {"e": 1}}}}}  # 5 levels
    response = post_capture(client_for(station), metadata=json.dumps(nested))
    assert response.status_code == 201, response.content
    assert response.json()["metadata"] == nested


@pytest.mark.parametrize(
    "metadata, words",
    [
        (json.dumps({"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}), "6 levels"),
        ("[" * 10_000 + "]" * 10_000, "bytes"),  # over the size limit before it is parsed
        ("[" * 5000 + "]" * 5000, "nested"),  # deeper than Python's JSON parser goes
        (json.dumps({"serial": "x" * 20_000}), "bytes"),
        (json.dumps({f"k{i}": i for i in range(5000)}), "bytes"),
        ("{not json", "JSON object"),
        ("[1, 2]", "JSON object"),
    ],
)
def test_bad_metadata_is_a_clear_400(station, deployment, metadata, words):
    response = post_capture(client_for(station), metadata=metadata)
    assert_nothing_stored(response, 400, "invalid")
    assert "metadata" in response.json()["error"]["fields"]
    assert words in response.json()["error"]["message"]


def test_three_megabytes_of_form_fields_is_413_not_500(station, deployment):
    response = post_capture(client_for(station), metadata="x" * (3 * 1024 * 1024))
    assert_nothing_stored(response, 413, "too_large")


def test_five_thousand_form_fields_is_400_not_500(station, deployment):
    extra = {f"field{i}": "1" for i in range(5000)}
    response = post_capture(client_for(station), **extra)
    assert_nothing_stored(response, 400, "too_many_fields")


def test_a_deeply_nested_json_body_is_400_not_500(line):
    decision = DecisionFactory(capture__station=station_with_token(line=line))
    client = APIClient()
    client.force_authenticate(UserFactory(roles=["inspector"], lines=[line]))
    body = '{"verdict": "fail", "regions": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = client.post(
        f"/api/v1/captures/{decision.capture_id}/verdict", body, content_type="application/json"
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] in {"too_deep", "parse_error"}


# --- Filters of the list ---


@pytest.mark.parametrize(
    "query",
    [
        "station=99999999999999999999999999",
        "station=-1",
        "station=abc",
        "received_after=not-a-date",
        "status=maybe",
        "line=" + "L" * 40,
    ],
)
def test_bad_list_filters_are_400(line, station, query):
    client = APIClient()
    client.force_authenticate(UserFactory(roles=["supervisor"]))
    response = client.get(f"/api/v1/captures?{query}")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["message"]


def test_huge_offsets_are_a_clear_400_and_huge_limits_still_answer_a_page(
    line, station, deployment
):
    post_capture(client_for(station))
    client = APIClient()
    client.force_authenticate(UserFactory(roles=["supervisor"]))
    # The list pages by cursor; an offset past the bound says to follow the links.
    response = client.get("/api/v1/captures?offset=99999999999999999999999&limit=10")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "offset_too_deep"
    body = client.get("/api/v1/captures?offset=10000&limit=10").json()
    assert (body["results"], body["next"]) == ([], None)
    body = client.get("/api/v1/captures?limit=99999999999999999999").json()
    assert len(body["results"]) == 1


# --- Concurrent inference ---


def test_inference_runs_at_most_serving_max_concurrent_at_once(monkeypatch, settings):
    settings.SERVING_MAX_CONCURRENT = 2
    settings.SERVING_QUEUE_TIMEOUT_SECONDS = 10
    running, peak, lock = 0, 0, threading.Lock()

    class SlowPredictor:
        def predict(self, images):
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.1)
            with lock:
                running -= 1
            return ["prediction"]

    monkeypatch.setattr(serving, "_load", lambda path, sha256: SlowPredictor())
    results = []
    threads = [
        threading.Thread(
            target=lambda: results.append(serving.predict(sha256="a" * 64, artifact="x", image=0))
        )
        for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["prediction"] * 6
    assert peak == 2


def test_a_capture_that_waits_too_long_for_inference_is_503_with_retry_after(
    station, deployment, settings
):
    settings.SERVING_MAX_CONCURRENT = 1
    settings.SERVING_QUEUE_TIMEOUT_SECONDS = 0.05
    slots = serving._inference_slots()
    assert slots.acquire(timeout=1)  # another capture holds the only slot
    try:
        response = post_capture(client_for(station))
    finally:
        slots.release()
    assert_nothing_stored(response, 503, "busy")
    assert int(response["Retry-After"]) >= 1
    assert post_capture(client_for(station)).status_code == 201  # and once it is free, 201


# --- The long poll when the channel layer (Redis) is down ---


class DownChannelLayer:
    """What channels_redis does with Redis stopped: every call fails to connect."""

    async def new_channel(self, prefix="specific."):
        return "specific.down!1"

    async def group_add(self, group, channel):
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 6399)")

    async def group_discard(self, group, channel):
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 6399)")

    async def receive(self, channel):
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 6399)")


@pytest.mark.django_db(transaction=True)
def test_long_poll_without_the_channel_layer_falls_back_to_reading_the_database(monkeypatch, line):
    monkeypatch.setattr(capture_apis, "get_channel_layer", DownChannelLayer)
    station = station_with_token(line=line)
    decision = DecisionFactory(capture__station=station)
    inspector = UserFactory(roles=["inspector"])

    def decide_later():
        time.sleep(0.5)
        services.verdict_record(capture_id=decision.capture_id, user=inspector, verdict="fail")

    thread = threading.Thread(target=decide_later)
    started = time.monotonic()
    thread.start()
    response = client_for(station).get(f"/api/v1/captures/{decision.capture_id}?wait=20")
    thread.join()
    assert response.status_code == 200, response.content
    assert time.monotonic() - started < 5
    assert (response.json()["status"], response.json()["verdict"]) == ("decided", "fail")


def test_long_poll_whose_layer_fails_mid_wait_keeps_waiting_and_answers(monkeypatch, line):
    class FailsLater(DownChannelLayer):
        async def group_add(self, group, channel):
            return None

    monkeypatch.setattr(capture_apis, "get_channel_layer", FailsLater)
    station = station_with_token(line=line)
    decision = DecisionFactory(capture__station=station)
    started = time.monotonic()
    response = client_for(station).get(f"/api/v1/captures/{decision.capture_id}?wait=1.5")
    assert response.status_code == 200, response.content
    assert 1.4 < time.monotonic() - started < 5  # waited its time, re-reading the database
    assert response.json()["status"] == "pending"


# --- The body limit in front of Django (core/asgi_limits.py), without a server ---


def run_asgi(app, scope: dict, messages: list[dict]) -> list[dict]:
    """Feed `messages` to the app (then a disconnect); returns what it sent."""
    import asyncio

    sent, queue = [], list(messages)

    async def receive():
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def body_app(seen: list):
    """An app that reads the whole body, as Django does, then answers 200."""

    async def app(scope, receive, send):
        while True:
            message = await receive()
            seen.append(message)
            if message["type"] == "http.disconnect":
                return
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def http_scope(path: str, headers=()) -> dict:
    return {"type": "http", "method": "POST", "path": path, "headers": list(headers)}


def test_an_announced_body_over_the_limit_is_answered_413_without_reading(settings):
    from core.asgi_limits import BodySizeLimitMiddleware

    settings.REQUEST_MAX_BYTES = 1000
    seen: list = []
    scope = http_scope("/api/v1/lines/L1", [(b"content-length", b"5000")])
    sent = run_asgi(BodySizeLimitMiddleware(body_app(seen)), scope, [])
    assert seen == []  # the app never ran
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"]["code"] == "too_large"


def test_a_streamed_body_is_stopped_once_past_the_limit(settings):
    from core.asgi_limits import BodySizeLimitMiddleware

    settings.REQUEST_MAX_BYTES = 1000
    seen: list = []
    chunks = [{"type": "http.request", "body": b"x" * 400, "more_body": True}] * 10
    sent = run_asgi(BodySizeLimitMiddleware(body_app(seen)), http_scope("/x"), chunks)
    assert [m["type"] for m in seen] == ["http.request", "http.request", "http.disconnect"]
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [413]


def test_bodies_within_the_limit_pass_untouched_and_captures_get_their_own(settings):
    from core.asgi_limits import BodySizeLimitMiddleware, body_limit

    settings.REQUEST_MAX_BYTES = 1000
    settings.CAPTURE_MAX_BYTES = 5000
    settings.CAPTURE_FORM_OVERHEAD_BYTES = 100
    assert body_limit("/api/v1/captures") == 5100
    assert body_limit("/api/v1/datasets/imports") == settings.IMPORT_MAX_BYTES
    assert body_limit("/api/v1/lines/L1") == 1000
    seen: list = []
    chunks = [
        {"type": "http.request", "body": b"x" * 2000, "more_body": True},
        {"type": "http.request", "body": b"x" * 2000, "more_body": False},
    ]
    sent = run_asgi(BodySizeLimitMiddleware(body_app(seen)), http_scope("/api/v1/captures"), chunks)
    assert seen == chunks
    assert sent[0]["status"] == 200
