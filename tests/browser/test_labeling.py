"""Labeling in a real Chromium: a labeler draws a polygon on the next task and submits, a
reviewer accepts, and a supervisor freezes a dataset version from it."""

import pytest

from core.blobs import blob_write
from labeling.models import DatasetVersion, LabelTask
from labeling.services import task_create_from_inspection
from tests.browser.conftest import login, wait_for_js
from tests.factories import CaptureFactory, DecisionFactory, ProductionLineFactory, UserFactory
from vision.synth import encode_jpeg, synth_phone

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def override_task(line) -> LabelTask:
    phone = synth_phone(seed=3, size=(320, 200))
    relative, sha256 = blob_write(encode_jpeg(phone.image), extension="jpg", folder="captures")
    capture = CaptureFactory(
        station__line=line, image=relative, image_sha256=sha256, width=320, height=200
    )
    DecisionFactory(
        capture=capture,
        status="decided",
        verdict="fail",
        decided_by="human",
        model_verdict="pass",
        overrode_model=True,
        regions=[{"box": [20, 30, 90, 60], "defect_type": "scratch"}],
    )
    capture.refresh_from_db()
    return task_create_from_inspection(capture=capture, reason="override")


def test_label_review_and_freeze_a_dataset_version(chromium, station_server, screenshot):
    line = ProductionLineFactory(code="L1", name="Assembly 1")
    task = override_task(line)
    UserFactory(username="lea", roles=["labeler"])
    UserFactory(username="rita", roles=["supervisor"])

    page = login(chromium, station_server, "lea")
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto("/label/")
    page.wait_for_selector("#stage:not([hidden])", state="attached")
    wait_for_js(page, "document.getElementById('photo').naturalWidth > 0")
    # The inspector's box is there as a pre-annotation.
    assert page.locator("#regions li").count() == 1
    screenshot(page, "label-1-task-opened")

    box = page.locator("#photo").bounding_box()

    def at(x, y):  # image pixels -> screen
        return box["x"] + x * box["width"] / 320, box["y"] + y * box["height"] / 200

    page.keyboard.press("p")
    for x, y in [(150, 80), (250, 90), (230, 160), (160, 150)]:
        page.mouse.click(*at(x, y))
    page.keyboard.press("Enter")
    assert page.locator("#regions li").count() == 2
    page.keyboard.press("2")  # the new polygon is selected: make it a crack
    page.wait_for_selector("#save-state[data-state=live]:has-text('saved')")
    screenshot(page, "label-2-polygon-drawn")

    # Nothing lost on reload: the autosaved polygon comes back.
    page.reload()
    page.wait_for_selector("#stage:not([hidden])", state="attached")
    wait_for_js(page, "document.querySelectorAll('#regions li').length === 2")
    assert page.locator("#regions li select").nth(1).input_value() == "crack"
    page.keyboard.press("s")
    page.wait_for_selector("#message:has-text('submitted')")
    screenshot(page, "label-3-submitted")
    task.refresh_from_db()
    assert task.status == "review"

    reviewer = login(chromium, station_server, "rita")
    reviewer.set_viewport_size({"width": 1366, "height": 768})
    reviewer.goto("/label/review/")
    reviewer.wait_for_selector("#queue li")
    wait_for_js(reviewer, "document.getElementById('photo').naturalWidth > 0")
    screenshot(reviewer, "label-4-review")
    reviewer.keyboard.press("a")
    reviewer.wait_for_selector("#message:has-text('Accepted')")

    reviewer.goto("/label/datasets/")
    reviewer.fill("input[name=name]", "reviewed-v1")
    reviewer.click("text=Freeze reviewed labels")
    reviewer.wait_for_selector("tr[data-name=reviewed-v1]")
    screenshot(reviewer, "label-5-dataset-version", full_page=True)

    version = DatasetVersion.objects.get(name="reviewed-v1")
    assert version.counts["label"] == {"defect": 1}
    [item] = version.items.all()
    shapes = sorted((r["shape"], r["defect_type"]) for r in item.regions)
    assert shapes == [("box", "scratch"), ("polygon", "crack")]
    assert item.mask  # the polygon is rasterised for training
