"""Labeling in a real Chromium: a labeler draws a polygon on the next task and submits, a
reviewer accepts, and a supervisor freezes a dataset version from it; a labeler paints a thin
scratch with the brush, zoomed in, and the mask is saved."""

import numpy as np
import pytest

from core import selectors as core_selectors
from core.blobs import blob_write
from inspection import services as inspection_services
from labeling.masks import rle_mask
from labeling.models import Annotation, DatasetVersion, LabelTask
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
    rita = UserFactory(username="rita", roles=["supervisor"])
    # A type the supervisor added: the page lists it with its hotkey, Q makes a region one.
    inspection_services.defect_type_create(
        taxonomy=core_selectors.taxonomy_default(), user=rita, name="dent", label="Dent",
        colour="#00c853", hotkey="q",
    )  # fmt: skip

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
    assert "Q" in page.locator("#type-keys").text_content()
    assert "Dent" in page.locator("#type-keys").text_content()
    page.keyboard.press("Tab")  # the inspector's box: a dent, by the new type's hotkey
    page.keyboard.press("q")
    page.wait_for_selector("#save-state[data-state=live]:has-text('saved')")
    screenshot(page, "label-2-polygon-drawn")
    page.locator("#type-keys").scroll_into_view_if_needed()
    screenshot(page, "label-2b-defect-type-keys")

    # Nothing lost on reload: the autosaved polygon comes back.
    page.reload()
    page.wait_for_selector("#stage:not([hidden])", state="attached")
    wait_for_js(page, "document.querySelectorAll('#regions li').length === 2")
    assert page.locator("#regions li select").nth(1).input_value() == "crack"
    assert page.locator("#regions li select").nth(0).input_value() == "dent"
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
    assert shapes == [("box", "dent"), ("polygon", "crack")]
    assert item.mask  # the polygon is rasterised for training


def scratch_task(line) -> tuple[LabelTask, np.ndarray]:
    """A grey phone with a thin dark scratch (2 px wide) from (100, 70) to (220, 130)."""
    pixels = np.full((200, 320, 3), 170, dtype=np.uint8)
    scratch = np.zeros((200, 320), dtype=bool)
    for x in range(100, 221):
        y = 70 + (x - 100) // 2
        scratch[y : y + 2, x] = True
    pixels[scratch] = 40
    relative, sha256 = blob_write(encode_jpeg(pixels), extension="jpg", folder="captures")
    capture = CaptureFactory(
        station__line=line, image=relative, image_sha256=sha256, width=320, height=200
    )
    DecisionFactory(
        capture=capture, status="decided", verdict="fail", decided_by="human", regions=[]
    )
    capture.refresh_from_db()
    return task_create_from_inspection(capture=capture, reason="override"), scratch


def test_a_labeler_paints_a_thin_scratch_with_the_brush(chromium, station_server, screenshot):
    task, scratch = scratch_task(ProductionLineFactory(code="L2", name="Assembly 2"))
    UserFactory(username="bea", roles=["labeler"])
    page = login(chromium, station_server, "bea")
    page.goto("/label/")
    page.wait_for_selector("#stage:not([hidden])", state="attached")
    wait_for_js(page, "document.getElementById('photo').naturalWidth > 0")
    page.keyboard.press("+")  # zoomed in: strokes still land in image pixels
    page.keyboard.press("b")
    page.fill("#brush-size", "3")  # the slider (an input event), 3 image pixels
    page.dispatch_event("#brush-size", "input")
    page.locator("#viewport").focus()  # keys go to the page again, not the slider
    page.keyboard.press("]")  # 4 px
    assert page.locator("#brush-size-value").text_content() == "4 px"
    box = page.locator("#photo").bounding_box()

    def at(x, y):  # image pixels -> screen, at the current zoom
        return box["x"] + x * box["width"] / 320, box["y"] + y * box["height"] / 200

    page.mouse.move(*at(100, 71))
    page.mouse.down()
    for x in range(100, 221, 6):
        page.mouse.move(*at(x, 71 + (x - 100) / 2))
    page.mouse.move(*at(220, 131))
    page.mouse.up()
    assert page.locator("#regions li").count() == 1
    assert "mask" in page.locator("#regions li").first.text_content()

    def stroke(points):
        page.mouse.move(*at(*points[0]))
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*at(*point))
        page.mouse.up()

    stroke([(60, 150), (66, 152), (72, 150)])  # a slip: it adds to the selected mask...
    assert page.locator("#regions li").count() == 1
    page.keyboard.press("e")
    for _ in range(4):
        page.keyboard.press("]")
    stroke([(54, 150), (62, 151), (70, 150), (78, 151)])  # ...and the eraser takes it away
    page.wait_for_selector("#save-state[data-state=live]:has-text('saved')")
    page.keyboard.press("b")
    page.mouse.move(*at(160, 40))  # the brush circle beside the stroke, for the screenshot
    screenshot(page, "label-6-brush-scratch")

    page.keyboard.press("s")
    page.wait_for_selector("#message:has-text('submitted')")
    annotation = Annotation.objects.get(task=task)
    assert annotation.status == "submitted" and annotation.label == "defect"
    [region] = annotation.regions
    assert region["shape"] == "mask" and isinstance(region["mask"]["counts"], str)
    painted = np.zeros((200, 320), dtype=bool)
    x0, y0, x1, y1 = region["box"]
    painted[y0:y1, x0:x1] = rle_mask(region["mask"])
    covered = (painted & scratch).sum() / scratch.sum()
    assert covered > 0.95, covered  # the scratch is painted...
    assert painted.sum() < 4 * scratch.sum(), painted.sum()  # ...with a thin stroke, not a box
    assert 96 <= x0 <= 100 and 217 <= x1 <= 225, region["box"]
    assert 66 <= y0 <= 71 and 128 <= y1 <= 136, region["box"]


def test_a_supervisor_adds_and_deactivates_a_defect_type(chromium, station_server, screenshot):
    UserFactory(username="sam", roles=["supervisor"])
    page = login(chromium, station_server, "sam")
    page.goto("/supervise/")
    page.click("text=Defect types")
    add = page.locator('form.type-add[data-taxonomy="default"]')
    add.locator("input[name=name]").fill("dent")
    add.locator("input[name=label]").fill("Dent")
    add.locator("input[name=hotkey]").fill("2")  # crack's: refused in the server's words
    add.locator("button[type=submit]").click()
    page.wait_for_selector("form.type-add [data-role=refusal]:has-text('already crack')")
    add.locator("input[name=hotkey]").fill("q")
    add.locator("button[type=submit]").click()
    page.wait_for_selector('tr[data-type="dent"]')
    page.locator('tr[data-type="dent"] input[name=is_active]').uncheck()
    page.locator('form[data-type="dent"] button[type=submit]').click()
    page.wait_for_selector('tr[data-type="dent"].inactive')
    screenshot(page, "label-7-defect-types", full_page=True)
    dent = core_selectors.defect_type_get(taxonomy=core_selectors.taxonomy_default(), name="dent")
    assert (dent.hotkey, dent.is_active) == ("q", False)
