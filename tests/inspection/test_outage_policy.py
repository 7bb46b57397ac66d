"""The outage policy: what a line's stations do with a phone while the server cannot be reached
(hold, reject, or the edge model). A line setting like the others: set by supervisors on
/supervise/ and the API, audited, read by the line's stations."""

import pytest
from django.test import Client
from rest_framework.test import APIClient

from core.errors import ApplicationError
from core.models import LineSettingsChange
from inspection import services
from tests.factories import ProductionLineFactory, UserFactory, station_with_token

pytestmark = pytest.mark.django_db


def supervisor_client() -> tuple[APIClient, object]:
    user = UserFactory(roles=["supervisor"])
    client = APIClient()
    client.force_authenticate(user)
    return client, user


def test_a_supervisor_sets_the_policy_the_change_is_audited_and_the_station_reads_it():
    line = ProductionLineFactory(code="L1")
    station = station_with_token(line=line)
    reader = APIClient()
    reader.credentials(HTTP_AUTHORIZATION=f"Token {station.token}")
    assert reader.get("/api/v1/lines/L1").json()["outage_policy"] == "hold"  # the default

    client, supervisor = supervisor_client()
    response = client.patch("/api/v1/lines/L1", {"outage_policy": "edge"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["outage_policy"] == "edge"
    change = LineSettingsChange.objects.get(line=line)
    assert change.changed_by == supervisor
    assert change.changes == {"outage_policy": {"old": "hold", "new": "edge"}}
    assert reader.get("/api/v1/lines/L1").json()["outage_policy"] == "edge"
    # A station reads its line's policy; it does not change it.
    refused = reader.patch("/api/v1/lines/L1", {"outage_policy": "reject"}, format="json")
    assert refused.status_code == 403


def test_an_unknown_policy_is_refused_in_words():
    line = ProductionLineFactory(code="L1")
    client, _ = supervisor_client()
    response = client.patch("/api/v1/lines/L1", {"outage_policy": "guess"}, format="json")
    assert response.status_code == 400
    assert "outage_policy" in response.json()["error"]["message"]
    with pytest.raises(ApplicationError, match="hold, reject, edge"):
        services.line_settings_update(line=line, user=None, outage_policy="guess")
    assert not LineSettingsChange.objects.exists()


def test_the_supervise_page_shows_and_sends_the_policy():
    ProductionLineFactory(code="L1", outage_policy="reject")
    page = Client()
    page.force_login(UserFactory(roles=["supervisor"]))
    html = page.get("/supervise/").content.decode()
    assert '<select name="outage_policy">' in html
    assert 'value="reject" title="Reject: the phone goes to rework" selected' in html


def test_the_schema_documents_the_policy():
    client, _ = supervisor_client()
    schema = client.get("/api/schema/?format=json").json()
    components = schema["components"]["schemas"]
    output = components["LineOutput"]["properties"]["outage_policy"]
    assert output["allOf"] == [{"$ref": "#/components/schemas/OutagePolicyEnum"}]
    assert components["OutagePolicyEnum"]["enum"] == ["hold", "reject", "edge"]
    assert "reject it to rework" in output["description"]
