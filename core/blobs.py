"""The one store of files: captured images, heatmaps, imported images and masks (MEDIA), model
artifacts and evaluation overlays (MODELS), named by content (sha256) where they can be.

Written on Django's storage API (`STORAGES["default"]` and `STORAGES["models"]`, see
config/settings.py and core/storage.py): the local disk by default, an S3-compatible bucket when
configured, the same code either way. Every app reads and writes files through here, never
`MEDIA_ROOT / ...`:

- `blob_write`, `blob_write_at`, `blob_copy_file`: writes are atomic (a reader never sees half a
  file) and idempotent (the same bytes land at the same name once). A full disk is one clear
  error (507 `storage_full`), an object store that cannot be reached another (503
  `storage_unavailable`); nothing is left behind by either.
- `blob_read`, `blob_open`, `blob_exists`, `blob_file_response`: reads, streamed where they
  can be; `blob_delete` (retention).
- `blob_local_path`: a file on this machine's disk holding the bytes, for code that needs a
  path (torch loading an artifact, a training run reading images): the stored file itself on
  local storage, else a copy cached under BLOB_CACHE_ROOT by name (names are content-addressed,
  so a cached copy never goes stale), checked against its sha256 when one is given.
- `blob_scratch`: a local folder for work in progress (training output, evaluation overlays)
  before what is kept is stored.
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
from typing import IO

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.http import FileResponse

from core.errors import ApplicationError

try:  # only needed with object storage, but always installed (requirements.txt)
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:  # pragma: no cover
    BotoCoreError = ClientError = ()  # type: ignore[assignment,misc]

logger = logging.getLogger(__name__)

MEDIA = "media"
MODELS = "models"
_ALIASES = {MEDIA: "default", MODELS: "models"}


def blob_storage(store: str = MEDIA) -> Storage:
    return storages[_ALIASES[store]]


def _local(storage: Storage) -> bool:
    return isinstance(storage, FileSystemStorage)


def _name(relative: str | Path) -> str:
    name = Path(relative).as_posix()
    if name.startswith("/") or ".." in Path(name).parts:
        raise ValueError(f"not a stored name: {relative}")
    return name


def _missing(exc: Exception) -> bool:
    if isinstance(exc, FileNotFoundError):
        return True
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return code in {"404", "NoSuchKey", "NotFound"}
    return False


@contextmanager
def _storage_errors(name: str, *, writing: bool) -> Iterator[None]:
    """A full disk becomes 507, an unreachable object store 503 (both with Retry-After); a
    missing file FileNotFoundError; the rest passes through."""
    try:
        yield
    except OSError as exc:
        if writing and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            logger.error("storage full: could not write %s: %s", name, exc)
            raise ApplicationError(
                "The server's storage is full: nothing was stored. Retry later; the server has "
                "logged it for its operator.",
                code="storage_full",
                status=507,
                headers={"Retry-After": "60"},
            ) from exc
        raise
    except (BotoCoreError, ClientError) as exc:
        if _missing(exc):
            raise FileNotFoundError(name) from exc
        logger.error("object storage failed on %s: %s", name, exc)
        raise ApplicationError(
            "The file store cannot be reached: nothing was stored. Retry in a few seconds.",
            code="storage_unavailable",
            status=503,
            headers={"Retry-After": "5"},
        ) from exc


def content_name(sha256: str, *, folder: str, extension: str) -> str:
    """`<folder>/<sha[:2]>/<sha>.<ext>`: where content-addressed bytes live."""
    extension = extension.lower().lstrip(".") or "bin"
    return f"{folder}/{sha256[:2]}/{sha256}.{extension}"


def blob_exists(relative: str | Path, *, store: str = MEDIA) -> bool:
    if Path(relative).is_absolute():
        return Path(relative).exists()
    name = _name(relative)
    with _storage_errors(name, writing=False):
        return blob_storage(store).exists(name)


def _same_size_exists(storage: Storage, name: str, size: int) -> bool:
    try:
        return storage.exists(name) and storage.size(name) == size
    except FileNotFoundError:
        return False


def blob_write_at(relative: str, data: bytes, *, store: str = MEDIA) -> str:
    """Write bytes at a given name, atomically; an existing file of that size is kept."""
    name = _name(relative)
    storage = blob_storage(store)
    with _storage_errors(name, writing=True):
        if _same_size_exists(storage, name, len(data)):
            return relative
        storage.save(name, ContentFile(data))
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
    name = _name(relative)
    storage = blob_storage(store)
    with _storage_errors(name, writing=True):
        if _same_size_exists(storage, name, Path(source).stat().st_size):
            return relative
        with open(source, "rb") as stream:
            storage.save(name, File(stream, name=Path(name).name))
    return relative


def blob_delete(relative: str | Path, *, store: str = MEDIA) -> int:
    """Delete a stored file; its size in bytes, or 0 when there was none."""
    name = _name(relative)
    storage = blob_storage(store)
    with _storage_errors(name, writing=True):
        try:
            if not storage.exists(name):
                return 0
            size = storage.size(name)
        except FileNotFoundError:
            return 0
        storage.delete(name)
    return size


def blob_open(relative: str | Path, *, store: str = MEDIA) -> IO[bytes]:
    """The stored file, open for reading (FileNotFoundError when there is none)."""
    if Path(relative).is_absolute():
        return open(relative, "rb")
    name = _name(relative)
    with _storage_errors(name, writing=False):
        return blob_storage(store).open(name, "rb")


def blob_read(relative: str | Path, *, store: str = MEDIA) -> bytes:
    with blob_open(relative, store=store) as stream:
        name = str(relative)
        with _storage_errors(name, writing=False):
            return stream.read()


def blob_file_response(
    relative: str | Path | None, *, content_type: str, store: str = MEDIA, what: str = "image"
) -> FileResponse:
    """A streamed response of a stored file, cached by browsers for a day (names are
    content-addressed); 404 in our error shape when the file is gone."""
    try:
        if not relative:
            raise FileNotFoundError(relative)
        stream = blob_open(relative, store=store)
    except FileNotFoundError:
        raise ApplicationError(
            f"The {what} file is missing.", code="not_found", status=404
        ) from None
    response = FileResponse(stream, content_type=content_type)
    response["Cache-Control"] = "private, max-age=86400, immutable"
    return response


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def blob_local_path(relative: str | Path, *, store: str = MEDIA, sha256: str | None = None) -> Path:
    """A path on this machine holding the stored bytes (see the module's docstring). With
    `sha256`, a cached copy that does not match is fetched again, and a stored file that does not
    match is an error (ValueError)."""
    if Path(relative).is_absolute():
        return Path(relative)
    name = _name(relative)
    storage = blob_storage(store)
    if _local(storage):
        return Path(storage.path(name))
    cached = Path(settings.BLOB_CACHE_ROOT) / store / name
    if cached.is_file() and (sha256 is None or _sha256_of(cached) == sha256):
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=cached.parent, prefix=".incoming-")
    try:
        with (
            os.fdopen(handle, "wb") as target,
            blob_open(name, store=store) as source,
            _storage_errors(name, writing=False),
        ):
            shutil.copyfileobj(source, target, 1 << 20)
        if sha256 is not None and _sha256_of(Path(temporary)) != sha256:
            raise ValueError(f"{name}: the stored bytes do not match sha256 {sha256[:12]}")
        os.replace(temporary, cached)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return cached


def blob_scratch(prefix: str) -> Path:
    """A new local folder for work in progress; the caller removes it (shutil.rmtree)."""
    root = Path(settings.BLOB_CACHE_ROOT) / "scratch"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=root, prefix=f"{prefix}-"))
