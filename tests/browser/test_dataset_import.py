"""Importing a dataset from the browser: a supervisor uploads a zip of real magnetic tiles with
masks (and two files that must be refused) on /label/datasets/, watches the progress and the
report, and gets a dataset version; a real Celery worker does the import."""

import csv
import io
import uuid
import zipfile
from pathlib import Path

import pytest

from labeling.models import DatasetItem, DatasetVersion
from tests.browser.conftest import login
from tests.factories import UserFactory
from tests.integration.conftest import child_env, free_port, start, stop, wait_for_port

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TILES = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "magnetic_tile_defect"


@pytest.fixture
def import_server(postgres, redis_url, tmp_path):
    queue = f"test-import-{uuid.uuid4().hex[:8]}"
    env = child_env(
        REDIS_URL=redis_url,
        CHANNELS_PREFIX=queue,
        CELERY_DEFAULT_QUEUE=queue,
        CELERY_TRAINING_QUEUE=queue,
    )
    port = free_port()
    web_log, worker_log = tmp_path / "uvicorn.log", tmp_path / "worker.log"
    web = start(["uvicorn", "config.asgi:application", "--port", str(port)], env, web_log)
    worker = start(
        ["celery", "-A", "config", "worker", "-Q", queue, "--pool", "solo",
         "--without-gossip", "--without-mingle"],
        env,
        worker_log,
    )  # fmt: skip
    try:
        wait_for_port(port, web, web_log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(worker)
        stop(web)


def tiles_zip(path: Path, count: int = 4) -> Path:
    rows = list(csv.DictReader((TILES / "manifest.csv").open()))
    with_masks = [row for row in rows if row["mask_file"]][: count - 1]
    good = [row for row in rows if row["label"] == "ok"][:1]
    manifest = io.StringIO()
    writer = csv.writer(manifest)
    writer.writerow(["file", "label", "defect_type", "mask_file"])
    with zipfile.ZipFile(path, "w") as archive:
        for row in with_masks + good:
            archive.write(TILES / row["file"], row["file"])
            if row["mask_file"]:
                archive.write(TILES / row["mask_file"], row["mask_file"])
            writer.writerow([row["file"], row["label"], row["defect_type"], row["mask_file"]])
        archive.writestr("images/broken.jpg", b"not an image")
        writer.writerow(["images/broken.jpg", "ok", "", ""])
        archive.writestr("../outside.png", b"x")
        archive.writestr("manifest.csv", manifest.getvalue())
    return path


def test_a_supervisor_imports_a_zip_and_reads_the_report(
    chromium, import_server, screenshot, tmp_path
):
    if not TILES.is_dir():
        pytest.fail(f"the shared datasets are missing: {TILES}")
    UserFactory(username="sam", roles=["supervisor"])
    archive = tiles_zip(tmp_path / "tiles.zip")
    page = login(chromium, import_server, "sam")
    page.goto("/label/datasets/")
    assert "pixels an image" in page.locator("#import-limits").text_content()
    page.set_input_files("#import-form input[name=archive]", str(archive))
    page.fill("#import-form input[name=name]", "tiles-from-the-browser")
    page.click("#import-form button[type=submit]")
    page.wait_for_selector("#import-state >> text=done", timeout=90_000)
    errors = page.locator("#import-errors li").all_text_contents()
    assert any("broken.jpg" in error for error in errors), errors
    assert any("outside.png" in error for error in errors), errors
    screenshot(page, "datasets-import-report", full_page=True)

    version = DatasetVersion.objects.get(name="tiles-from-the-browser")
    items = DatasetItem.objects.filter(dataset_version=version)
    assert items.count() == 4  # the good ones; broken.jpg and ../outside.png were refused
    assert items.filter(label="defect").exclude(mask="").count() == 3

    # The zip export, streamed by the ASGI server: images, masks and the manifest come back.
    page.reload()
    link = page.locator(f'tr[data-name="{version.name}"] a:text-is("zip")')
    download = page.request.get(link.get_attribute("href"))
    assert download.ok and download.headers["content-type"] == "application/zip"
    exported = zipfile.ZipFile(io.BytesIO(download.body()))
    assert exported.testzip() is None
    rows = list(csv.DictReader(io.TextIOWrapper(exported.open("manifest.csv"), "utf-8")))
    assert len(rows) == 4 and sum(1 for row in rows if row["mask_file"]) >= 3
    page.context.close()
