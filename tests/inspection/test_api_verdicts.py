"""Inspectors' verdicts, claims, and the station's long poll on a pending capture."""

import threading
import time

import pytest
from rest_framework.test import APIClient

from inspection import services
from inspection.models import Decision
from labeling.models import LabelTask
from tests.factories import DecisionFactory, ProductionLineFactory, UserFactory, station_with_token


@pytest.fixture
def inspector():
    return UserFactory(roles=["inspector"], lines=[ProductionLineFactory(code="L1")])


def as_user(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def pending(**kwargs) -> Decision:
    station = station_with_token(line=ProductionLineFactory(code="L1"))
    decision = DecisionFactory(capture__station=station, **kwargs)
    decision.capture.station.token = station.token
    return decision


@pytest.mark.django_db
def test_inspector_decides_a_pending_capture(inspector, django_capture_on_commit_callbacks):
    decision = pending(model_verdict="uncertain", reason="uncertain")
    url = f"/api/v1/captures/{decision.capture_id}/verdict"
    with django_capture_on_commit_callbacks() as callbacks:
        response = as_user(inspector).post(
            url,
            {"verdict": "fail", "regions": [{"box": [1, 2, 50, 60]}], "note": "scratch top left"},
            format="json",
        )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["verdict"], body["decided_by"]) == ("decided", "fail", "human")
    decision.refresh_from_db()
    assert decision.decided_by_user == inspector
    assert decision.regions == [{"box": [1, 2, 50, 60], "defect_type": "scratch"}]
    assert decision.overrode_model is None  # the model was unsure: nothing to override
    task = LabelTask.objects.get()
    assert (task.source, task.pre_verdict, task.pre_annotation) == (
        "uncertain",
        "fail",
        [{"box": [1, 2, 50, 60], "defect_type": "scratch"}],
    )
    assert len(callbacks) == 1  # the decision event, sent on commit


@pytest.mark.django_db
def test_overriding_the_model_is_recorded_and_sent_to_labeling(inspector):
    decision = pending(model_verdict="pass", reason="assisted")
    as_user(inspector).post(
        f"/api/v1/captures/{decision.capture_id}/verdict", {"verdict": "fail"}, format="json"
    )
    decision.refresh_from_db()
    assert decision.overrode_model is True
    assert LabelTask.objects.get().source == "override"


@pytest.mark.django_db
def test_agreeing_with_the_model_is_not_an_override(inspector):
    decision = pending(model_verdict="pass", reason="assisted")
    as_user(inspector).post(
        f"/api/v1/captures/{decision.capture_id}/verdict", {"verdict": "pass"}, format="json"
    )
    decision.refresh_from_db()
    assert decision.overrode_model is False
    assert not LabelTask.objects.exists()


@pytest.mark.django_db
def test_deciding_twice_is_a_conflict(inspector):
    decision = pending()
    url = f"/api/v1/captures/{decision.capture_id}/verdict"
    assert as_user(inspector).post(url, {"verdict": "pass"}, format="json").status_code == 200
    response = as_user(
        UserFactory(roles=["inspector"], lines=[ProductionLineFactory(code="L1")])
    ).post(url, {"verdict": "fail"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "already_decided"


@pytest.mark.django_db
def test_a_claimed_capture_belongs_to_its_inspector(inspector):
    decision = pending()
    claim = as_user(inspector).post(f"/api/v1/captures/{decision.capture_id}/claim")
    assert claim.status_code == 200
    other = as_user(UserFactory(roles=["inspector"], lines=[ProductionLineFactory(code="L1")]))
    response = other.post(
        f"/api/v1/captures/{decision.capture_id}/verdict", {"verdict": "fail"}, format="json"
    )
    assert (response.status_code, response.json()["error"]["code"]) == (409, "claimed")
    assert other.post(f"/api/v1/captures/{decision.capture_id}/claim").status_code == 409


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("roles", "status"), [([], 403), (["labeler"], 403), (["supervisor"], 200), (["admin"], 200)]
)
def test_who_may_give_verdicts(roles, status):
    decision = pending()
    response = as_user(UserFactory(roles=roles)).post(
        f"/api/v1/captures/{decision.capture_id}/verdict", {"verdict": "pass"}, format="json"
    )
    assert response.status_code == status


@pytest.mark.django_db
def test_a_station_cannot_give_verdicts():
    decision = pending()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {decision.capture.station.token}")
    response = client.post(
        f"/api/v1/captures/{decision.capture_id}/verdict", {"verdict": "pass"}, format="json"
    )
    assert response.status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize(
    "payload",
    [{}, {"verdict": "maybe"}, {"verdict": "fail", "regions": [{"box": [5, 5, 1, 1]}]}],
)
def test_bad_verdicts_are_400(inspector, payload):
    decision = pending()
    response = as_user(inspector).post(
        f"/api/v1/captures/{decision.capture_id}/verdict", payload, format="json"
    )
    assert response.status_code == 400
    assert Decision.objects.get().status == "pending"


@pytest.mark.django_db
def test_malformed_json_is_a_clear_400(inspector):
    decision = pending()
    response = as_user(inspector).post(
        f"/api/v1/captures/{decision.capture_id}/verdict",
        "{not json",
        content_type="application/json",
    )
    assert (response.status_code, response.json()["error"]["code"]) == (400, "parse_error")


def station_client(decision) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {decision.capture.station.token}")
    return client


@pytest.mark.django_db
def test_wait_returns_at_once_when_decided(inspector):
    decision = pending()
    services.verdict_record(capture_id=decision.capture_id, user=inspector, verdict="pass")
    started = time.monotonic()
    body = station_client(decision).get(f"/api/v1/captures/{decision.capture_id}?wait=30").json()
    assert time.monotonic() - started < 2
    assert (body["status"], body["verdict"]) == ("decided", "pass")


@pytest.mark.django_db
def test_wait_gives_up_after_the_time(inspector):
    decision = pending()
    started = time.monotonic()
    body = station_client(decision).get(f"/api/v1/captures/{decision.capture_id}?wait=1").json()
    assert 0.9 < time.monotonic() - started < 5
    assert body["status"] == "pending"


@pytest.mark.django_db(transaction=True)
def test_wait_answers_as_soon_as_a_human_decides(inspector):
    decision = pending()

    def decide_later():
        time.sleep(0.5)
        services.verdict_record(capture_id=decision.capture_id, user=inspector, verdict="fail")

    thread = threading.Thread(target=decide_later)
    started = time.monotonic()
    thread.start()
    body = station_client(decision).get(f"/api/v1/captures/{decision.capture_id}?wait=20").json()
    thread.join()
    assert time.monotonic() - started < 5
    assert (body["status"], body["verdict"], body["decided_by"]) == ("decided", "fail", "human")
