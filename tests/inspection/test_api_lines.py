"""Line settings: read by everyone with a role, changed by supervisors, every change audited."""

import pytest
from rest_framework.test import APIClient

from core.models import LineSettingsChange
from tests.factories import ProductionLineFactory, UserFactory, station_with_token

pytestmark = pytest.mark.django_db


def as_user(*roles) -> tuple[APIClient, object]:
    user = UserFactory(roles=list(roles))
    client = APIClient()
    client.force_authenticate(user)
    return client, user


def test_supervisor_changes_settings_and_the_change_is_audited():
    # No guard rail on this line (min_shadow_captures=0): the move to partial is allowed.
    line = ProductionLineFactory(code="L1", automation_level="assisted", min_shadow_captures=0)
    client, supervisor = as_user("supervisor")
    response = client.patch(
        "/api/v1/lines/L1", {"automation_level": "partial", "pass_threshold": 0.2}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["automation_level"] == "partial"
    change = LineSettingsChange.objects.get(line=line)
    assert change.changed_by == supervisor
    assert change.changes == {
        "automation_level": {"old": "assisted", "new": "partial"},
        "pass_threshold": {"old": 0.3, "new": 0.2},
    }
    trail = client.get("/api/v1/lines/L1/changes").json()
    assert trail[0]["changed_by"] == supervisor.username
    assert trail[0]["changes"]["automation_level"]["new"] == "partial"


def test_an_unchanged_value_is_not_an_audit_entry():
    ProductionLineFactory(code="L1", automation_level="partial")
    client, _ = as_user("supervisor")
    client.patch("/api/v1/lines/L1", {"automation_level": "partial"}, format="json")
    assert not LineSettingsChange.objects.exists()


@pytest.mark.parametrize(
    "payload",
    [
        {"automation_level": "sometimes"},
        {"pass_threshold": 0.8},  # above the fail threshold 0.7
        {"fail_threshold": 1.5},
        {"audit_percent": -1},
    ],
)
def test_invalid_settings_are_refused(payload):
    ProductionLineFactory(code="L1")
    client, _ = as_user("supervisor")
    response = client.patch("/api/v1/lines/L1", payload, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["message"]
    assert not LineSettingsChange.objects.exists()


@pytest.mark.parametrize("roles", [[], ["inspector"], ["labeler"]])
def test_only_supervisors_change_settings(roles):
    ProductionLineFactory(code="L1")
    client, _ = as_user(*roles)
    response = client.patch("/api/v1/lines/L1", {"automation_level": "full"}, format="json")
    assert response.status_code == 403


def test_reading_lines():
    line = ProductionLineFactory(code="L1")
    ProductionLineFactory(code="L2")
    client, inspector = as_user("inspector")
    line.inspectors.add(inspector)
    # An inspector reads the lines assigned to them; a supervisor reads all.
    assert [line["code"] for line in client.get("/api/v1/lines").json()] == ["L1"]
    assert client.get("/api/v1/lines/L1").json()["inspectors"] == [inspector.username]
    assert client.get("/api/v1/lines/L2").status_code == 404
    assert client.get("/api/v1/lines/L9").status_code == 404
    supervisor, _ = as_user("supervisor")
    assert [line["code"] for line in supervisor.get("/api/v1/lines").json()] == ["L1", "L2"]
    station = station_with_token(line=ProductionLineFactory(code="L3"))
    station_client = APIClient()
    station_client.credentials(HTTP_AUTHORIZATION=f"Token {station.token}")
    assert [line["code"] for line in station_client.get("/api/v1/lines").json()] == ["L3"]
    assert station_client.get("/api/v1/lines/L1").status_code == 404
    assert station_client.patch("/api/v1/lines/L3", {}, format="json").status_code == 403
