"""Environment-driven settings and the one error format of the API."""

import logging

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import path
from rest_framework.test import APIClient
from rest_framework.views import APIView

from config import settings as project_settings
from tests.factories import UserFactory


def test_env_helpers(monkeypatch):
    monkeypatch.setenv("FLAG", "yes")
    monkeypatch.setenv("NUMBER", "12")
    monkeypatch.setenv("ITEMS", "a, b,,c")
    assert project_settings.env_bool("FLAG", False) is True
    assert project_settings.env_int("NUMBER", 1) == 12
    assert project_settings.env_list("ITEMS", "") == ["a", "b", "c"]
    monkeypatch.setenv("FLAG", "perhaps")
    with pytest.raises(ImproperlyConfigured, match="FLAG"):
        project_settings.env_bool("FLAG", False)
    monkeypatch.setenv("NUMBER", "many")
    with pytest.raises(ImproperlyConfigured, match="NUMBER"):
        project_settings.env_int("NUMBER", 1)


def test_a_server_without_secret_key_refuses_to_start(monkeypatch):
    monkeypatch.setattr(project_settings, "DEBUG", False)
    monkeypatch.setattr(project_settings, "SECRET_KEY", project_settings.INSECURE_DEV_SECRET_KEY)
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY"):
        project_settings.check_production_settings()
    monkeypatch.setattr(project_settings, "SECRET_KEY", "a-real-secret")
    project_settings.check_production_settings()


class Boom(APIView):
    permission_classes = []

    def get(self, request):
        raise RuntimeError("a bug")


urlpatterns = [path("api/boom", Boom.as_view())]


@pytest.mark.django_db
@pytest.mark.urls("tests.config.test_settings_and_errors")
def test_an_unhandled_error_is_logged_and_answered_in_json(caplog):
    client = APIClient(raise_request_exception=False)
    with caplog.at_level(logging.ERROR, logger="core.errors"):
        response = client.get("/api/boom")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "server_error"
    assert "a bug" not in response.content.decode()  # no internals leak to stations
    assert any("Unhandled error" in r.message and r.exc_info for r in caplog.records)


@pytest.mark.django_db
def test_the_schema_documents_the_station_api():
    client = APIClient()
    client.force_authenticate(UserFactory())
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/api/v1/captures", "/api/v1/captures/{capture_id}"} <= set(paths)
    assert "wait" in str(paths["/api/v1/captures/{capture_id}"])


@pytest.mark.django_db
def test_pages_need_a_login(client):
    assert client.get("/").status_code == 302
    assert client.get("/accounts/login/").status_code == 200
    client.force_login(UserFactory(roles=["inspector"]))
    assert b"inspector" in client.get("/").content
