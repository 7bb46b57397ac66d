"""The one blob store: content-addressed, idempotent, atomic, and where each store lives."""

import hashlib
from pathlib import Path

import pytest

from core import blobs


def test_bytes_are_stored_once_by_content(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    data = b"phone image bytes"
    name, sha = blobs.blob_write(data, folder="captures", extension="JPG")
    assert sha == hashlib.sha256(data).hexdigest()
    assert name == f"captures/{sha[:2]}/{sha}.jpg"
    assert blobs.blob_write(data, folder="captures", extension="jpg") == (name, sha)
    assert blobs.blob_read(name) == data
    assert sorted(p.name for p in (tmp_path / "media").rglob("*") if p.is_file()) == [f"{sha}.jpg"]


def test_a_failed_write_leaves_no_partial_file(settings, tmp_path, monkeypatch):
    settings.MEDIA_ROOT = tmp_path
    monkeypatch.setattr(blobs.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError):
        blobs.blob_write_at("heatmaps/x.png", b"png")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_models_live_under_models_root_and_large_files_are_copied(settings, tmp_path):
    settings.MODELS_ROOT = tmp_path / "models-root"
    source = tmp_path / "model.pt"
    source.write_bytes(b"weights" * 1000)
    name = blobs.blob_copy_file(source, "models/abc.pt", store=blobs.MODELS)
    assert (
        blobs.blob_local_path(name, store=blobs.MODELS)
        == tmp_path / "models-root" / "models/abc.pt"
    )
    assert blobs.blob_read(name, store=blobs.MODELS) == source.read_bytes()
    assert blobs.blob_local_path(str(source)) == Path(source)  # an absolute path passes through
