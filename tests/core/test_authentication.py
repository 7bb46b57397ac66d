"""Station tokens: each web process keeps a station it found by token for
STATION_AUTH_CACHE_SECONDS; changes made through the services reach it at once."""

import time

import pytest
from rest_framework.test import APIClient

from core.authentication import station_for_token, stations_forget
from core.models import Station
from inspection import services
from tests.factories import ProductionLineFactory, UserFactory, station_with_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def kept(settings):
    settings.STATION_AUTH_CACHE_SECONDS = 0.3
    stations_forget()
    yield
    stations_forget()


def _status(token: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client.get("/api/v1/captures").status_code


def test_a_disabled_token_stops_working_within_the_cache_time(kept, django_assert_num_queries):
    station = station_with_token(line=ProductionLineFactory(code="L1"), name="S1")
    assert _status(station.token) == 200
    with django_assert_num_queries(0):  # kept: no lookup
        assert station_for_token(station.token).pk == station.pk
    Station.objects.filter(pk=station.pk).update(is_active=False)  # e.g. from another process
    time.sleep(0.35)
    assert _status(station.token) == 401


def test_a_token_rotated_in_this_process_stops_at_once(kept, django_capture_on_commit_callbacks):
    station = station_with_token(line=ProductionLineFactory(code="L1"), name="S1")
    assert _status(station.token) == 200
    with django_capture_on_commit_callbacks(execute=True):
        new = services.station_token_rotate(station=station)
    assert _status(station.token) == 401
    assert _status(new.token) == 200


def test_a_line_changed_in_this_process_reaches_its_stations_at_once(
    kept, django_capture_on_commit_callbacks
):
    line = ProductionLineFactory(code="L1", automation_level="assisted")
    station = station_with_token(line=line, name="S1")
    assert station_for_token(station.token).line.automation_level == "assisted"
    supervisor = UserFactory(username="sam", roles=["supervisor"])
    with django_capture_on_commit_callbacks(execute=True):
        services.line_settings_update(line=line, user=supervisor, automation_level="shadow")
    assert station_for_token(station.token).line.automation_level == "shadow"


def test_unknown_tokens_are_looked_up_every_time(kept, django_assert_num_queries):
    for _ in range(2):
        with django_assert_num_queries(1):
            assert station_for_token("not-a-token") is None
