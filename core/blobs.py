"""The one store of files: captured images, heatmaps, imported images and masks under
MEDIA_ROOT, model artifacts under MODELS_ROOT, named by content (sha256) where they can be.

Writes are atomic (a reader never sees half a file) and idempotent (the same bytes land at the
same name once). A full disk leaves nothing behind and is one clear error (507 `storage_full`).
Every app reads and writes files through here, never `MEDIA_ROOT / ...`.
"""

import errno
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from core.errors import ApplicationError

logger = logging.getLogger(__name__)

MEDIA = "media"
MODELS = "models"


def _root(store: str) -> Path:
    return Path(settings.MODELS_ROOT if store == MODELS else settings.MEDIA_ROOT)


def blob_path(relative: str | Path, *, store: str = MEDIA) -> Path:
    """The absolute path of a stored file (an absolute path passes through)."""
    path = Path(relative)
    return path if path.is_absolute() else _root(store) / path


def blob_read(relative: str | Path, *, store: str = MEDIA) -> bytes:
    return blob_path(relative, store=store).read_bytes()


def blob_exists(relative: str | Path, *, store: str = MEDIA) -> bool:
    return blob_path(relative, store=store).exists()


@contextmanager
def _refused_when_full(target: Path) -> Iterator[None]:
    """A disk (or quota) that is full becomes ApplicationError 507, the rest passes through."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        logger.error("storage full: could not write %s: %s", target, exc)
        raise ApplicationError(
            "The server's storage is full: nothing was stored. Retry later; the server has "
            "logged it for its operator.",
            code="storage_full",
            status=507,
            headers={"Retry-After": "60"},
        ) from exc


def content_name(sha256: str, *, folder: str, extension: str) -> str:
    """`<folder>/<sha[:2]>/<sha>.<ext>`: where content-addressed bytes live."""
    extension = extension.lower().lstrip(".") or "bin"
    return f"{folder}/{sha256[:2]}/{sha256}.{extension}"


def blob_write_at(relative: str, data: bytes, *, store: str = MEDIA) -> str:
    """Write bytes at a given name, atomically; an existing file of that size is kept."""
    target = blob_path(relative, store=store)
    if target.exists() and target.stat().st_size == len(data):
        return relative
    with _refused_when_full(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
            os.replace(temporary, target)
        except BaseException:  # a full disk among others: no half-written file stays
            Path(temporary).unlink(missing_ok=True)
            raise
    return relative


def blob_write(
    data: bytes, *, folder: str, extension: str, sha256: str | None = None, store: str = MEDIA
) -> tuple[str, str]:
    """Store bytes by their content. Returns (relative name, sha256)."""
    sha256 = sha256 or hashlib.sha256(data).hexdigest()
    relative = content_name(sha256, folder=folder, extension=extension)
    return blob_write_at(relative, data, store=store), sha256


def blob_copy_file(source: Path, relative: str, *, store: str = MEDIA) -> str:
    """Copy a (large) file in at a given name, atomically, without reading it into memory."""
    target = blob_path(relative, store=store)
    if target.exists() and target.stat().st_size == source.stat().st_size:
        return relative
    with _refused_when_full(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        os.close(handle)
        try:
            shutil.copyfile(source, temporary)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    return relative
