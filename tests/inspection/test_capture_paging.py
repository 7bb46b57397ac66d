"""The captures list pages by cursor (keyset): every capture exactly once, newest first, also
while new captures arrive; no COUNT; `?offset=` kept for old clients, up to a bound."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from tests.factories import (
    CaptureFactory,
    DecisionFactory,
    ProductionLineFactory,
    StationFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def station():
    return StationFactory(line=ProductionLineFactory(code="L1"))


@pytest.fixture
def supervisor():
    client = APIClient()
    client.force_authenticate(UserFactory(roles=["supervisor"]))
    return client


def make_captures(station, count: int, *, start, seconds_apart: float = -60.0, ties: int = 0):
    """`count` captures from `start` on (older and older by default); the first `ties` share
    one received_at, so the id alone orders them."""
    made = []
    for index in range(count):
        at = start if index < ties else start + timedelta(seconds=seconds_apart * index)
        capture = CaptureFactory(station=station, received_at=at)
        DecisionFactory(capture=capture)
        made.append(capture)
    return made


def expected_order(captures) -> list[str]:
    ordered = sorted(captures, key=lambda c: (-c.received_at.timestamp(), str(c.id)))
    return [str(c.id) for c in ordered]


def page_through(client, url: str) -> tuple[list[str], list[dict]]:
    ids, pages = [], []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        assert set(body) == {"next", "previous", "results"}  # no count
        pages.append(body)
        ids += [row["id"] for row in body["results"]]
        url = body["next"]
    return ids, pages


def test_paging_with_the_cursor_returns_each_capture_once_in_order(station, supervisor):
    captures = make_captures(station, 23, start=timezone.now(), ties=4)
    ids, pages = page_through(supervisor, "/api/v1/captures?limit=5")
    assert ids == expected_order(captures)
    assert [len(p["results"]) for p in pages] == [5, 5, 5, 5, 3]
    assert pages[0]["previous"] is None and pages[-1]["next"] is None
    # Going back from the third page gives the second again.
    back = supervisor.get(pages[2]["previous"]).json()
    assert back["results"] == pages[1]["results"]
    assert supervisor.get(back["previous"]).json()["results"] == pages[0]["results"]


def test_captures_arriving_between_pages_do_not_shift_the_pages(station, supervisor):
    now = timezone.now()
    captures = make_captures(station, 12, start=now - timedelta(minutes=1))
    first = supervisor.get("/api/v1/captures?limit=4").json()
    seen = [row["id"] for row in first["results"]]
    url = first["next"]
    arrived = []
    while url:
        # New captures arrive while the client pages (newer than everything it has seen).
        arrived += make_captures(station, 2, start=timezone.now() + timedelta(seconds=1))
        body = supervisor.get(url).json()
        seen += [row["id"] for row in body["results"]]
        url = body["next"]
    assert seen == expected_order(captures)
    assert len(seen) == len(set(seen)) == 12
    # They are on the first page of a new walk.
    fresh, _ = page_through(supervisor, "/api/v1/captures?limit=50")
    assert fresh == expected_order(captures + arrived)


def test_filters_and_the_cursor_together(station, supervisor):
    captures = make_captures(station, 9, start=timezone.now())
    other = StationFactory(line=ProductionLineFactory(code="L2"))
    make_captures(other, 5, start=timezone.now())
    ids, _ = page_through(supervisor, "/api/v1/captures?line=L1&status=pending&limit=2")
    assert ids == expected_order(captures)


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "eyJkIjoibmV4dCIsImsiOlsibm90LWEtZGF0ZSIsIngiXX0",  # {"d":"next","k":["not-a-date","x"]}
        "eyJkIjoic2lkZXdheXMiLCJrIjpbXX0",  # {"d":"sideways","k":[]}
        "x" * 500,
    ],
)
def test_a_cursor_that_is_not_ours_is_a_clear_400(station, supervisor, cursor):
    make_captures(station, 2, start=timezone.now())
    response = supervisor.get(f"/api/v1/captures?cursor={cursor}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_cursor"


def test_offset_still_works_for_old_clients_up_to_a_bound(station, supervisor):
    captures = make_captures(station, 10, start=timezone.now())
    body = supervisor.get("/api/v1/captures?offset=3&limit=4").json()
    assert [row["id"] for row in body["results"]] == expected_order(captures)[3:7]
    assert "offset" not in body["next"] and "cursor=" in body["next"]  # then by cursor
    rest = supervisor.get(body["next"]).json()
    assert [row["id"] for row in rest["results"]] == expected_order(captures)[7:]
    too_deep = supervisor.get("/api/v1/captures?offset=10001")
    assert too_deep.status_code == 400
    assert too_deep.json()["error"]["code"] == "offset_too_deep"
    assert "next" in too_deep.json()["error"]["message"]
