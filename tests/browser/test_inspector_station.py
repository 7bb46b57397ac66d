"""The inspector's station and the supervisor's page in a real Chromium, on a live server."""

import hashlib
import json
import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from core.blobs import blob_write
from core.models import LineSettingsChange
from inspection.models import Capture, Decision, Prediction
from models_registry import services as registry_services
from tests.browser.conftest import login, station_client, wait_for_js
from tests.factories import (
    CaptureFactory,
    DecisionFactory,
    ModelVersionFactory,
    ProductionLineFactory,
    UserFactory,
    station_with_token,
)
from vision.synth import encode_jpeg, synth_phone

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def phone_jpeg(seed: int, defects=None) -> bytes:
    return encode_jpeg(synth_phone(seed=seed, size=(768, 432), defect_types=defects).image)


def wait_until(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def capture_with_regions(*, station, model_version) -> Capture:
    """A capture the model flagged with two regions, as if just ingested on an assisted line."""
    phone = synth_phone(seed=7, size=(768, 432), defect_types=["scratch"])
    rows, cols = phone.mask.nonzero()
    scratch = [int(cols.min()) - 4, int(rows.min()) - 4, int(cols.max()) + 5, int(rows.max()) + 5]
    data = encode_jpeg(phone.image)
    sha = hashlib.sha256(data).hexdigest()
    capture = CaptureFactory(
        station=station,
        image=blob_write(data, folder="captures", extension="jpg", sha256=sha)[0],
        image_sha256=sha,
        image_bytes=len(data),
        width=768,
        height=432,
    )
    prediction = Prediction.objects.create(
        capture=capture,
        model_version=model_version,
        role="production",
        score=0.91,
        verdict="fail",
        latency_ms=12.0,
        regions=[
            {"box": scratch, "polygon": [], "score": 0.93, "defect_type": "scratch"},
            {"box": [520, 300, 560, 340], "polygon": [], "score": 0.74, "defect_type": "scratch"},
        ],
    )
    DecisionFactory(
        capture=capture, reason="assisted", model_verdict="fail", acting_prediction=prediction
    )
    return capture


def prediction_box(capture) -> list[int]:
    return capture.predictions.get().regions[0]["box"]


def test_inspector_decides_live_captures_with_keyboard_and_drawn_box(
    chromium, station_server, model_artifact, screenshot
):
    line = ProductionLineFactory(code="L1", name="Assembly 1", automation_level="assisted")
    model = registry_services.model_version_register(path=model_artifact, name="scratchnet-tiny")
    registry_services.deployment_set(line=line, model_version=model, role="production")
    station = station_with_token(line=line, name="S1")
    UserFactory(username="ines", roles=["inspector"], lines=[line])
    UserFactory(username="ivan", roles=["inspector"], lines=[line])
    station_http = station_client(station_server, station.token)

    page = login(chromium, station_server, "ines")
    page.goto("/inspect/L1/")
    page.wait_for_selector("#connection[data-state=live]")
    assert page.locator("nav >> text=Supervise").count() == 0  # inspectors: no supervisor controls

    # A capture posted by the station appears without reload, within a second of the answer.
    response = station_http.post(
        "/api/v1/captures",
        data={"line": "L1", "idempotency_key": "phone-1"},
        files={"image": ("p.jpg", phone_jpeg(1, defects=[]), "image/jpeg")},
    )
    assert response.status_code == 201, response.text
    capture_id = response.json()["id"]
    assert response.json()["status"] == "pending"
    page.wait_for_selector(f'#queue li[data-id="{capture_id}"]', timeout=1500)
    page.wait_for_selector("#model-box .suggest-pass")  # the untrained model says pass
    wait_until(lambda: Decision.objects.get(capture_id=capture_id).claimed_by_id)
    screenshot(page, "inspect-1366x768-queue")

    # The second inspector never sees the capture ines holds.
    other = login(chromium, station_server, "ivan")
    other.goto("/inspect/L1/")
    other.wait_for_selector("#connection[data-state=live]")
    other.wait_for_timeout(500)
    assert other.locator("#queue li").count() == 0
    assert other.locator("#queue-empty").is_visible()
    screenshot(other, "inspect-second-inspector-empty")
    other.context.close()

    # The station waits on the long poll while ines overrides "pass" with a drawn box.
    answer = {}
    poll = threading.Thread(
        target=lambda: answer.update(
            station_http.get(f"/api/v1/captures/{capture_id}", params={"wait": 30}).json()
        )
    )
    poll.start()
    page.keyboard.press("f")  # fail where the model saw nothing: the page asks for a box
    page.wait_for_selector("#message[data-kind=ask]")
    assert page.locator("#viewport.drawing").count() == 1
    page.select_option("#draw-type", "crack")  # one of the line's defect types
    page.locator("#viewport").focus()  # keys go to the page again, not the select
    box = page.locator("#viewport").bounding_box()
    x, y = box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.4
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 60, y + 30, steps=5)
    page.mouse.up()
    assert page.locator("#overlay rect.drawn").count() == 1
    screenshot(page, "inspect-drawn-box")
    page.keyboard.press("f")
    poll.join(timeout=30)
    assert (answer["status"], answer["verdict"], answer["decided_by"]) == (
        "decided",
        "fail",
        "human",
    )
    decision = Decision.objects.get(capture_id=capture_id)
    assert decision.overrode_model is True
    [region] = decision.regions
    x0, y0, x1, y1 = region["box"]
    assert x1 - x0 > 20 and y1 - y0 > 10  # in image pixels, whatever the zoom
    assert region["defect_type"] == "crack"

    # Z takes it back (the station gets a correction); P then passes it.
    page.wait_for_selector("#undo-button:not([disabled])")
    page.keyboard.press("z")
    wait_until(lambda: Decision.objects.get(capture_id=capture_id).status == "pending")
    page.wait_for_selector(f'#queue li.current[data-id="{capture_id}"]')
    regions_capture = capture_with_regions(station=station, model_version=model)
    page.keyboard.press("p")
    wait_until(lambda: Decision.objects.get(capture_id=capture_id).verdict == "pass")

    # The next capture: the model's two regions, a heatmap, one region rejected, Enter accepts.
    page.wait_for_selector(f'#queue li.current[data-id="{regions_capture.id}"]')
    page.wait_for_selector("#overlay g.region >> nth=1")
    page.hover("#overlay g.region >> nth=0")
    screenshot(page, "inspect-model-regions")
    page.keyboard.press("h")
    wait_for_js(page, "document.getElementById('heatmap').naturalWidth > 0", timeout=20000)
    screenshot(page, "inspect-heatmap")
    page.keyboard.press("h")
    page.click("#overlay g.region >> nth=1")
    assert page.locator("#overlay g.region.rejected").count() == 1
    page.keyboard.press("Enter")
    decision = wait_until(
        lambda: Decision.objects.filter(capture=regions_capture, status="decided").first()
    )
    assert decision.verdict == "fail" and decision.overrode_model is False
    assert [(r["box"], r.get("rejected", False)) for r in decision.regions] == [
        (prediction_box(regions_capture), False),
        ([520, 300, 560, 340], True),
    ]
    page.wait_for_selector("#my-count >> text=2")  # the undone verdict does not count
    screenshot(page, "inspect-after-decisions")

    # The same page on a large monitor.
    big = login(chromium, station_server, "ines", width=1920, height=1080)
    big.goto("/inspect/L1/")
    big.wait_for_selector("#connection[data-state=live]")
    screenshot(big, "inspect-1920x1080-empty")
    big.context.close()
    page.context.close()


def test_supervisor_is_refused_partial_until_the_guard_rail_holds(
    chromium, station_server, screenshot
):
    line = ProductionLineFactory(
        code="L2",
        name="Assembly 2",
        automation_level="shadow",
        min_shadow_captures=3,
        min_agreement_percent=90,
    )
    ProductionLineFactory(code="L1", name="Assembly 1", automation_level="assisted")
    UserFactory(username="sam", roles=["supervisor"])
    page = login(chromium, station_server, "sam")
    page.goto("/supervise/")
    form = page.locator('form.line-settings[data-line="L2"]')
    form.locator("select[name=automation_level]").select_option("partial")
    form.locator("button[type=submit]").click()
    refusal = form.locator("[data-role=refusal]")
    refusal.wait_for()
    wait_for_js(
        page,
        "document.querySelector('form[data-line=L2] [data-role=refusal]').textContent.length > 0",
    )
    assert "0 of 3" in refusal.text_content()
    screenshot(page, "supervise-refused", full_page=True)
    line.refresh_from_db()
    assert line.automation_level == "shadow"

    # Three shadow captures where the inspector agreed with the hidden model: the rail holds.
    for _ in range(3):
        DecisionFactory(
            capture__station=station_with_token(line=line),
            status="decided",
            verdict="pass",
            decided_by="human",
            reason="shadow",
            model_verdict="pass",
            overrode_model=False,
            decided_at=timezone.now(),
        )
    page.reload()
    form = page.locator('form.line-settings[data-line="L2"]')
    form.locator("select[name=automation_level]").select_option("partial")
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    line.refresh_from_db()
    assert line.automation_level == "partial"
    change = LineSettingsChange.objects.get(line=line)
    assert change.changed_by.username == "sam"
    assert page.locator("table.changes >> text=sam").count() == 1
    screenshot(page, "supervise-after-change", full_page=True)
    page.context.close()


def test_supervisor_assigns_an_inspector_who_then_sees_only_that_line(
    chromium, station_server, screenshot
):
    ProductionLineFactory(code="L1", name="Assembly 1", automation_level="assisted")
    ProductionLineFactory(code="L2", name="Assembly 2", automation_level="assisted")
    UserFactory(username="ines", roles=["inspector"])
    UserFactory(username="ivan", roles=["inspector"])
    UserFactory(username="sam", roles=["supervisor"])
    inspector = login(chromium, station_server, "ines")
    assert "No lines are assigned to you yet" in inspector.content()

    page = login(chromium, station_server, "sam")
    page.goto("/supervise/")
    form = page.locator('form.line-settings[data-line="L1"]')
    form.locator("select[name=inspectors]").select_option(["ines", "ivan"])
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    assert page.locator("table.changes >> text=inspectors").count() >= 1
    screenshot(page, "supervise-inspectors-assigned", full_page=True)
    selected = page.locator('form[data-line="L1"] select[name=inspectors] option:checked')
    assert selected.all_text_contents() == ["ines", "ivan"]

    inspector.goto("/")
    assert inspector.locator('a[href="/inspect/L1/"]').count() >= 1
    assert inspector.locator('a[href="/inspect/L2/"]').count() == 0
    screenshot(inspector, "home-inspector-one-line")
    assert inspector.goto("/inspect/L2/").status == 403
    page.context.close()
    inspector.context.close()


def test_inspector_confirms_an_audit_sample_with_enter(
    chromium, station_server, model_artifact, screenshot
):
    line = ProductionLineFactory(
        code="L3", name="Assembly 3", automation_level="full", audit_percent=100
    )
    model = registry_services.model_version_register(path=model_artifact, name="scratchnet-tiny")
    registry_services.deployment_set(line=line, model_version=model, role="production")
    station = station_with_token(line=line, name="S1")
    UserFactory(username="ines", roles=["inspector"], lines=[line])
    page = login(chromium, station_server, "ines")
    page.goto("/inspect/L3/")
    page.wait_for_selector("#connection[data-state=live]")

    # The station has its verdict at once; the audit sample reaches the inspector live.
    response = station_client(station_server, station.token).post(
        "/api/v1/captures",
        data={"line": "L3", "idempotency_key": "phone-a"},
        files={"image": ("p.jpg", phone_jpeg(3, defects=[]), "image/jpeg")},
    )
    body = response.json()
    assert (body["status"], body["audit_status"]) == ("decided", "pending"), body
    page.wait_for_selector(f'#queue li.current[data-id="{body["id"]}"] >> text=audit')
    note = page.wait_for_selector("#model-box [data-role=audit]")
    assert f"the model already decided {body['verdict']}" in " ".join(note.text_content().split())
    screenshot(page, "inspect-audit")
    page.keyboard.press("Enter")
    decision = wait_until(
        lambda: Decision.objects.filter(capture_id=body["id"], audit_status="confirmed").first()
    )
    assert decision.verdict == body["verdict"] and decision.audited_by.username == "ines"
    page.wait_for_selector("#queue-empty", state="visible")
    page.wait_for_selector("#message >> text=Confirmed")
    page.context.close()


def test_an_edge_decision_is_reviewed_and_marked_in_the_inspectors_history(
    chromium, station_server, screenshot
):
    line = ProductionLineFactory(code="L4", name="Assembly 4", automation_level="partial")
    version = ModelVersionFactory(name="scratchnet", version=3)
    station = station_with_token(line=line, name="S1")
    UserFactory(username="ines", roles=["inspector"], lines=[line])
    page = login(chromium, station_server, "ines")
    page.goto("/inspect/L4/")
    page.wait_for_selector("#connection[data-state=live]")

    # The station decided this phone with its edge model during an outage; the server is back
    # and the buffer is flushed: every edge verdict is audited by default.
    decided_at = timezone.now() - timedelta(minutes=30)
    edge = {"verdict": "pass", "score": 0.08, "model_version": version.pk,
            "decided_at": decided_at.isoformat()}  # fmt: skip
    response = station_client(station_server, station.token).post(
        "/api/v1/captures",
        data={"line": "L4", "idempotency_key": "phone-e", "edge_decision": json.dumps(edge)},
        files={"image": ("p.jpg", phone_jpeg(4, defects=["scratch"]), "image/jpeg")},
    )
    body = response.json()
    assert (body["decided_by"], body["audit_status"]) == ("edge", "pending"), body
    offset = page.evaluate(f"new Date('{decided_at.isoformat()}').getTimezoneOffset()")
    shown_at = (decided_at - timedelta(minutes=offset)).strftime("%H:%M")
    marked = f"edge model scratchnet v3, decided at the station at {shown_at} during an outage"

    page.wait_for_selector(f'#queue li.current[data-id="{body["id"]}"] >> text=audit')
    note = page.wait_for_selector("#model-box [data-role=audit]")
    assert f"{marked}, gave pass" in " ".join(note.text_content().split())
    history = page.wait_for_selector(f'#history li.edge[data-id="{body["id"]}"]', timeout=5000)
    assert marked in history.text_content() and "pass" in history.text_content()
    screenshot(page, "inspect-edge-decision")

    page.keyboard.press("Enter")  # the inspector agrees with the edge model
    wait_until(lambda: Decision.objects.get(capture_id=body["id"]).audit_status == "confirmed")
    page.context.close()
