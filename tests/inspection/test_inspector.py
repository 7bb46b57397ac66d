"""The inspector's claims (leases), release, undo, queue and shift figures; the guard rail;
the pages by role."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from core.models import LineSettingsChange
from inspection import selectors, services
from inspection.models import Decision
from labeling.models import LabelTask
from tests.factories import DecisionFactory, ProductionLineFactory, UserFactory, station_with_token

pytestmark = pytest.mark.django_db


def as_user(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def pending_on(line, **kwargs) -> Decision:
    return DecisionFactory(capture__station=station_with_token(line=line), **kwargs)


@pytest.fixture
def line():
    return ProductionLineFactory(code="L1", automation_level="assisted")


@pytest.fixture
def ines(line):
    return UserFactory(username="ines", roles=["inspector"], lines=[line])


@pytest.fixture
def ivan(line):
    return UserFactory(username="ivan", roles=["inspector"], lines=[line])


def test_a_claim_hides_the_capture_from_others_until_its_lease_runs_out(line, ines, ivan):
    decision = pending_on(line)
    services.capture_claim(capture=decision.capture_id, user=ines)
    now = timezone.now()
    assert list(selectors.inspector_queue(line_codes=["L1"], user=ines, now=now)) == [
        decision.capture
    ]
    assert not selectors.inspector_queue(line_codes=["L1"], user=ivan, now=now)
    response = as_user(ivan).post(
        f"/api/v1/captures/{decision.capture_id}/verdict", {"verdict": "pass"}, format="json"
    )
    assert (response.status_code, response.json()["error"]["code"]) == (409, "claimed")

    # Ines walked away: after the lease, ivan may take and decide it.
    Decision.objects.filter(pk=decision.pk).update(claim_expires_at=now - timedelta(seconds=1))
    assert list(selectors.inspector_queue(line_codes=["L1"], user=ivan, now=timezone.now()))
    assert as_user(ivan).post(f"/api/v1/captures/{decision.capture_id}/claim").status_code == 200
    assert Decision.objects.get(pk=decision.pk).claimed_by == ivan


def test_renewing_keeps_the_opening_time_and_release_frees_the_capture(line, ines, ivan):
    decision = pending_on(line)
    first = services.capture_claim(capture=decision.capture_id, user=ines)
    renewed = services.capture_claim(capture=decision.capture_id, user=ines)
    assert renewed.claimed_at == first.claimed_at
    assert renewed.claim_expires_at >= first.claim_expires_at
    response = as_user(ines).post(f"/api/v1/captures/{decision.capture_id}/release")
    assert response.status_code == 200 and response.json()["claimed_by"] is None
    assert list(selectors.inspector_queue(line_codes=["L1"], user=ivan, now=timezone.now()))


def test_undo_reopens_the_verdict_for_its_inspector_only_and_withdraws_label_tasks(
    line, ines, ivan, django_capture_on_commit_callbacks
):
    decision = pending_on(line, reason="assisted", model_verdict="pass")
    client = as_user(ines)
    client.post(f"/api/v1/captures/{decision.capture_id}/claim")
    client.post(
        f"/api/v1/captures/{decision.capture_id}/verdict",
        {"verdict": "fail", "regions": [{"box": [1, 2, 30, 40]}]},
        format="json",
    )
    assert LabelTask.objects.filter(source="override").exists()
    refused = as_user(ivan).post(f"/api/v1/captures/{decision.capture_id}/undo")
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "not_yours")

    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(f"/api/v1/captures/{decision.capture_id}/undo")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["verdict"], body["claimed_by"]) == ("pending", None, "ines")
    assert not LabelTask.objects.exists()
    assert len(callbacks) == 1  # the correction event (line, station, long poll)


def test_undo_is_refused_after_the_window(line, ines):
    decision = pending_on(line)
    services.verdict_record(capture_id=decision.capture_id, user=ines, verdict="pass")
    Decision.objects.filter(pk=decision.pk).update(
        decided_at=timezone.now() - timedelta(seconds=services.UNDO_SECONDS + 1)
    )
    response = as_user(ines).post(f"/api/v1/captures/{decision.capture_id}/undo")
    assert (response.status_code, response.json()["error"]["code"]) == (409, "undo_expired")


def test_queue_api_hides_the_model_in_shadow_and_counts_the_shift(ines):
    shadow = ProductionLineFactory(code="L2", automation_level="shadow")
    # ines is assigned to L1 only: L2's queue is refused until a supervisor assigns her.
    response = as_user(ines).get("/api/v1/queue", {"lines": "L1,L2"})
    assert (response.status_code, response.json()["error"]["code"]) == (403, "line_not_assigned")
    shadow.inspectors.add(ines)
    hidden = pending_on(shadow, reason="shadow", model_verdict="fail")
    done = pending_on(shadow)
    services.capture_claim(capture=done.capture_id, user=ines)
    Decision.objects.filter(pk=done.pk).update(claimed_at=timezone.now() - timedelta(seconds=4))
    services.verdict_record(capture_id=done.capture_id, user=ines, verdict="pass")

    body = as_user(ines).get("/api/v1/queue", {"lines": "L2"}).json()
    [item] = body["items"]
    assert item["id"] == str(hidden.capture_id)
    assert item["model"] is None and item["heatmap_url"] is None
    assert body["lines"] == [
        {"code": "L2", "name": "Line L2", "automation_level": "shadow", "queue_depth": 1}
    ]
    assert body["me"]["decisions"] == 1
    assert 3.5 < body["me"]["median_seconds"] < 10


def agreeing_shadow_decisions(line, count: int, *, overrode: bool = False) -> None:
    for _ in range(count):
        pending_on(
            line,
            status="decided",
            verdict="pass",
            decided_by="human",
            decided_at=timezone.now(),
            reason="shadow",
            model_verdict="fail" if overrode else "pass",
            overrode_model=overrode,
        )


def test_the_guard_rail_refuses_partial_until_enough_agreeing_shadow_captures():
    line = ProductionLineFactory(
        code="L1", automation_level="shadow", min_shadow_captures=4, min_agreement_percent=75
    )
    supervisor = UserFactory(roles=["supervisor"])
    client = as_user(supervisor)
    agreeing_shadow_decisions(line, 2)
    agreeing_shadow_decisions(line, 2, overrode=True)  # 50% agreement
    response = client.patch("/api/v1/lines/L1", {"automation_level": "partial"}, format="json")
    assert response.status_code == 409
    assert "agreement 50%" in response.json()["error"]["message"]
    # Lowering the bar and raising the level in one request is still judged by the old bar.
    response = client.patch(
        "/api/v1/lines/L1",
        {"automation_level": "full", "min_agreement_percent": 10},
        format="json",
    )
    assert response.status_code == 409
    assert not LineSettingsChange.objects.exists()

    agreeing_shadow_decisions(line, 4)  # the last 4 compared all agree
    response = client.patch("/api/v1/lines/L1", {"automation_level": "partial"}, format="json")
    assert response.status_code == 200, response.content
    # Moving down never needs the rail.
    type(line).objects.filter(pk=line.pk).update(min_shadow_captures=1000)
    response = client.patch("/api/v1/lines/L1", {"automation_level": "manual"}, format="json")
    assert response.status_code == 200


def test_pages_by_role(line, ines):
    supervisor = UserFactory(roles=["supervisor"])
    browser = Client()
    assert browser.get("/inspect/L1/").status_code == 302  # to the login page
    browser.force_login(ines)
    page = browser.get("/inspect/L1/")
    assert page.status_code == 200
    assert b"/supervise/" not in page.content  # inspectors see no supervisor controls
    assert browser.get("/supervise/").status_code == 403
    assert browser.get("/inspect/NOPE/").status_code == 404
    browser.force_login(supervisor)
    page = browser.get("/supervise/")
    assert page.status_code == 200 and b"Guard rail" in page.content
    assert browser.get("/inspect/L1/").status_code == 200
    assert browser.get("/static/js/inspect.js").status_code == 200
