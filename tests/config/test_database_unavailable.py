"""A database that cannot answer is a retryable 503 (Retry-After, a clear body), never a 500:
in DRF views, in plain and async Django views, and in errors outside any view.
(tests/integration/test_faults_postgres.py restarts a real PostgreSQL under load.)"""

import io
import sys

import psycopg_pool
import pytest
from asgiref.sync import async_to_sync
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse
from django.test import AsyncClient, RequestFactory
from django.urls import path
from rest_framework.test import APIClient

from core.errors import handler500
from inspection import services
from tests.factories import ProductionLineFactory, image_bytes, station_with_token

pytestmark = pytest.mark.django_db


def _page(request):
    raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")


async def _async_page(request):
    raise InterfaceError("connection already closed")


def _fine(request):
    return HttpResponse("fine")


urlpatterns = [
    path("page/", _page),
    path("api/v1/async/", _async_page),
    path("fine/", _fine),
]


def _post_capture(station):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {station.token}")
    image = io.BytesIO(image_bytes())
    image.name = "p.jpg"
    return client.post(
        "/api/v1/captures",
        {"image": image, "line": station.line.code, "idempotency_key": "k1"},
        format="multipart",
    )


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("server closed the connection unexpectedly"),
        InterfaceError("connection already closed"),
        psycopg_pool.PoolTimeout("couldn't get a connection after 10.00 sec"),
    ],
    ids=["operational", "interface", "pool-timeout"],
)
def test_an_api_call_without_its_database_answers_503_with_retry_after(monkeypatch, error):
    station = station_with_token(line=ProductionLineFactory(code="L1"))

    def unavailable(**kwargs):
        raise error

    monkeypatch.setattr(services, "capture_ingest", unavailable)
    response = _post_capture(station)
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    body = response.json()["error"]
    assert body["code"] == "database_unavailable"
    assert "retry" in body["message"]


@pytest.mark.urls(__name__)
def test_a_page_without_its_database_answers_503_not_500(client):
    response = client.get("/page/")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "database" in response.content.decode()
    assert client.get("/fine/").status_code == 200  # other views are left alone


@pytest.mark.urls(__name__)
def test_an_async_api_view_without_its_database_answers_json_503():
    response = async_to_sync(AsyncClient().get)("/api/v1/async/")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json()["error"]["code"] == "database_unavailable"


def test_a_database_error_outside_any_view_is_503_and_other_errors_stay_500():
    request = RequestFactory().get("/api/v1/captures")
    try:
        raise OperationalError("the database system is shutting down")
    except OperationalError:
        assert sys.exc_info()[0] is OperationalError
        response = handler500(request)
    assert response.status_code == 503 and response["Retry-After"] == "5"
    try:
        raise ValueError("a bug")
    except ValueError:
        assert handler500(request).status_code == 500
