"""Content-addressed files of labeling (imported images, rasterised masks) under MEDIA_ROOT."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from django.conf import settings


def media_path(relative: str) -> Path:
    """The absolute path of a file stored under MEDIA_ROOT (absolute paths pass through)."""
    path = Path(relative)
    return path if path.is_absolute() else Path(settings.MEDIA_ROOT) / path


def file_store(*, data: bytes, extension: str, folder: str = "labeling") -> tuple[str, str]:
    """Write bytes at <folder>/<sha[:2]>/<sha>.<ext> under MEDIA_ROOT; idempotent and atomic
    (a reader never sees half a file). Returns (relative path, sha256)."""
    sha256 = hashlib.sha256(data).hexdigest()
    extension = extension.lower().lstrip(".") or "bin"
    relative = f"{folder}/{sha256[:2]}/{sha256}.{extension}"
    target = media_path(relative)
    if target.exists() and target.stat().st_size == len(data):
        return relative, sha256
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return relative, sha256
