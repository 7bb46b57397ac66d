"""The monitor page in a real Chromium: after the lighting of L1 changed, a supervisor sees the
data drift, its chart, the open alert and reference and recent captures side by side."""

import pytest

from core.blobs import blob_write
from monitoring import services
from tests.browser.conftest import login, wait_for_js
from tests.factories import ProductionLineFactory, UserFactory
from tests.monitoring.conftest import SimulatedLine, reference_metadata
from vision.images import encode_jpeg
from vision.synth import Lighting, synth_phone

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def phone_image(seed: int, brightness: float) -> str:
    phone = synth_phone(seed=seed, size=(320, 180), lighting=Lighting(brightness=brightness))
    relative, _ = blob_write(encode_jpeg(phone.image), folder="captures", extension="jpg")
    return relative


def test_supervisor_sees_the_drift_its_chart_and_the_captures_side_by_side(
    chromium, station_server, screenshot
):
    sim = SimulatedLine(
        ProductionLineFactory(code="L1", name="Assembly 1", automation_level="assisted"),
        metadata=reference_metadata(),
    )
    normal, dark = phone_image(1, 1.0), phone_image(1, 0.5)  # one phone, less light
    for _ in range(9):  # the model's first 500 captures become the line's normal
        sim.captures(60, image=normal)
        services.line_check(line=sim.line)
    for _ in range(4):
        sim.captures(60, brightness_factor=0.8, image=dark)
        services.line_check(line=sim.line)
    UserFactory(username="sup", roles=["supervisor"])
    page = login(chromium, station_server, "sup")

    page.goto("/monitor/")
    assert page.locator('tr[data-line="L1"] [data-signal="data_drift"]').inner_text() == "drifted"
    screenshot(page, "monitor-overview")

    page.goto("/monitor/L1/")
    data = page.locator('section.signal[data-signal="data_drift"]')
    assert data.get_attribute("data-status") == "drifted"
    assert "brightness down" in data.locator(".summary").inner_text().lower()
    chart = data.locator("svg.chart")
    assert int(chart.get_attribute("data-points")) == 13
    assert chart.locator('circle[data-status="drifted"]').count() >= 1
    assert page.locator('[data-role="alerts"] .alert-drifted').count() == 1
    thumbs = page.locator('[data-role="reference-thumbs"] img')
    recent = page.locator('[data-role="recent-thumbs"] img')
    assert thumbs.count() >= 4 and recent.count() == 8
    wait_for_js(
        page,
        "() => [...document.querySelectorAll('[data-role=thumbnails] img')]"
        ".every((img) => img.complete && img.naturalWidth > 0)",
    )
    page.locator('[data-role="live"][data-state="live"]').wait_for()
    data.scroll_into_view_if_needed()
    screenshot(page, "monitor-line-drift", full_page=True)

    # The supervisor pins the recent captures as the new normal: the page says so.
    page.once("dialog", lambda dialog: dialog.accept())
    page.fill('form[data-api$="/reference"] input[name=last]', "200")
    page.click('form[data-api$="/reference"] button')
    page.wait_for_load_state("load")
    page.locator("text=captures pinned as normal").first.wait_for()
