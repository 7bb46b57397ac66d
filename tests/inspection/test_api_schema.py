"""The schema tells the truth (pages, errors) and its docs page works offline."""

import re

import pytest
from rest_framework.test import APIClient

from tests.factories import ProductionLineFactory, UserFactory, image_bytes, station_with_token
from tests.inspection.test_api_captures import client_for, post_capture

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    from drf_spectacular.generators import SchemaGenerator

    with django_db_blocker.unblock():
        return SchemaGenerator().get_schema(request=None, public=True)


def test_the_docs_page_loads_only_our_own_static_files(client, settings):
    settings.SECURE_SSL_REDIRECT = False
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert urls, html
    assert all(url.startswith(("/static/", "/api/")) for url in urls), urls
    assert "<script>" not in html  # the start-up script is a file of its own (CSP)
    assert "//" not in "".join(u for u in urls if not u.startswith("/api/"))
    for url in urls:
        if url.startswith("/static/"):
            assert client.get(url).status_code == 200, url
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200 and b"SwaggerUIBundle" in script.content


def test_the_capture_list_is_documented_as_the_page_it_returns(schema):
    operation = schema["paths"]["/api/v1/captures"]["get"]
    reference = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    page = schema["components"]["schemas"][reference.rsplit("/", 1)[1]]
    # Keyset pages: the links, no count (a COUNT over millions of captures per page).
    assert set(page["properties"]) == set(page["required"]) == {"next", "previous", "results"}
    assert {p["name"] for p in operation["parameters"]} >= {"limit", "cursor", "station"}

    line = ProductionLineFactory(code="L1")
    station = station_with_token(line=line)
    post_capture(client_for(station), data=image_bytes())
    client = APIClient()
    client.force_authenticate(UserFactory(roles=["supervisor"]))
    body = client.get("/api/v1/captures").json()
    assert set(body) == set(page["properties"])
    assert len(body["results"]) == 1 and body["next"] is None and body["previous"] is None


def test_every_operation_documents_its_errors_with_the_error_body(schema):
    assert schema["components"]["schemas"]["Error"]["required"] == ["error"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert {"401", "403", "429", "503"} <= set(responses), (method, path)
            if "{" in path:
                assert "404" in responses, (method, path)
            if "requestBody" in operation:
                assert {"400", "413", "415"} <= set(responses), (method, path)
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    content = response["content"]["application/json"]["schema"]
                    assert content["$ref"].endswith("/Error"), (method, path, status)


def test_the_capture_post_documents_its_own_errors(schema):
    responses = schema["paths"]["/api/v1/captures"]["post"]["responses"]
    assert {"200", "201", "409", "413", "415", "503"} <= set(responses)
    fields = schema["components"]["schemas"]["CaptureCollectionApiInputRequest"]["properties"]
    assert fields["metadata"]["type"] == "string"  # JSON text in a form field
    assert fields["image"]["format"] == "binary"
