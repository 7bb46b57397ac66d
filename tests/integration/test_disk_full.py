"""A full disk under MEDIA_ROOT (a real 2 MB tmpfs, filled up; the kernel answers ENOSPC):
the capture API answers 507 `storage_full` with a clear JSON body, nothing is half-stored (no
Capture row, no partial or temporary file), and the station's retry succeeds once there is
room again."""

import hashlib
import io
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from inspection.models import Capture
from tests.factories import (
    DeploymentFactory,
    ProductionLineFactory,
    image_bytes,
    station_with_token,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def small_disk(require_service):
    folder = Path(tempfile.mkdtemp(prefix="faults-disk-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    try:
        why = (mounted.stderr or mounted.stdout).strip() or "mount failed"
        require_service(
            "a 2 MB tmpfs for MEDIA_ROOT (mount needs root)", not mounted.returncode, why
        )
        yield folder
    finally:
        if not mounted.returncode:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def fill(disk: Path, leave: int) -> Path:
    """Write a filler file until only about `leave` bytes are free (0: until ENOSPC)."""
    filler = disk / "filler"
    stats = os.statvfs(disk)
    todo = max(0, stats.f_bavail * stats.f_frsize - leave) if leave else None
    handle = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while todo is None or todo > 0:
            chunk = 65536 if todo is None else min(65536, todo)
            try:
                written = os.write(handle, b"\0" * chunk)
            except OSError:  # ENOSPC: full
                break
            if todo is not None:
                todo -= written
    finally:
        os.close(handle)
    return filler


def post(client: APIClient, key: str, data: bytes):
    image = io.BytesIO(data)
    image.name = "p.jpg"
    return client.post(
        "/api/v1/captures", {"image": image, "line": "L1", "idempotency_key": key}, "multipart"
    )


def stored_files(disk: Path) -> list[str]:
    return sorted(str(p.relative_to(disk)) for p in disk.rglob("*") if p.is_file())


def test_a_full_disk_answers_507_and_stores_nothing(small_disk, settings, fake_models):
    settings.MEDIA_ROOT = small_disk
    line = ProductionLineFactory(code="L1", automation_level="partial")
    DeploymentFactory(line=line)  # a fake model: scores 0.1, decides "pass"
    station = station_with_token(line=line)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {station.token}")

    first = post(client, "fits", image_bytes(seed=0))
    assert first.status_code == 201, first.content
    big = image_bytes(512, 288, seed=1)  # ~150 KB of noise: JPEG cannot shrink it
    assert len(big) > 64 * 1024

    # Room for a part of the image only: the write starts, then the disk is full.
    filler = fill(small_disk, leave=32 * 1024)
    before = stored_files(small_disk)
    response = post(client, "no-room", big)
    assert response.status_code == 507, response.content
    error = response.json()["error"]
    assert error["code"] == "storage_full" and "storage is full" in error["message"]
    assert response["Retry-After"] == "60"
    assert not Capture.objects.filter(idempotency_key="no-room").exists()
    assert stored_files(small_disk) == before  # no partial file, no temporary file left
    sha = hashlib.sha256(big).hexdigest()
    assert not list(small_disk.rglob(f"{sha}*"))

    # Not one byte free.
    fill(small_disk, leave=0)
    response = post(client, "no-room", big)
    assert (response.status_code, response.json()["error"]["code"]) == (507, "storage_full")
    assert stored_files(small_disk) == before

    # Room again: the station's retry with the same key is stored, once.
    filler.unlink()
    retried = post(client, "no-room", big)
    assert retried.status_code == 201, retried.content
    capture = Capture.objects.get(idempotency_key="no-room")
    assert (small_disk / capture.image).read_bytes() == big
    assert not [name for name in stored_files(small_disk) if ".incoming-" in name]
    assert Capture.objects.count() == 2
