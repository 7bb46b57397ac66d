"""Dataset imports: an uploaded zip (a manifest CSV with its images and masks, a COCO JSON with
its images, or class folders: `ok/*.jpg`, `scratch/*.jpg`, ...) or a folder, checked file by file
and frozen into one DatasetVersion. A `regions.json` beside the manifest (our zip export) brings
back every region of each image.

The archive is stored through core.blobs (so any worker, on any machine, can read it), a
DatasetImport row is queued and `labeling.dataset_import_execute` runs it; progress, counts and
the per-file report are written to that row. A zip is opened defensively: its entry count and
unpacked size are bounded before anything is extracted (zip bombs), an entry that would land
outside the archive (`../`, an absolute path, a drive letter) or is a link is refused and
listed, and each entry is extracted counting its bytes. Refused files are reported with their
reason, the good ones imported; the version is written in one transaction at the end, so a
failed import leaves none. Images with the same bytes (sha256) are imported once; the others
are listed as duplicates.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO, Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.blobs import blob_copy_file, blob_local_path, blob_scratch, content_name
from core.errors import ApplicationError
from core.queueing import task_send_on_commit
from labeling.models import DatasetImport, DatasetImportStatus, DatasetItem, DatasetVersion
from labeling.regions import regions_normalize
from labeling.services.datasets import (
    DEFAULT_SPLIT_FRACTIONS,
    ImportedFile,
    _read_items,
    coco_files,
    dataset_version_from_items,
    items_store,
)
from labeling.services.exports import REGIONS_FILE
from vision.datasets import OUTSIDE_FOLDER, path_inside

logger = logging.getLogger(__name__)

TASK_NAME = "labeling.dataset_import_execute"
OUTSIDE_ARCHIVE = "path outside the archive (absolute paths and ../ are refused)"
# A regions.json beside a manifest is read whole: bounded (ours holds a few kB an image).
REGIONS_FILE_MAX_BYTES = 256 * 1024 * 1024
# Progress: unpacking takes the first tenth, checking and storing files the rest but the end.
_UNPACKED, _STORED = 0.1, 0.95


def import_limits() -> dict[str, int]:
    """The limits a person uploading should know (the page states them)."""
    return {
        "max_bytes": settings.IMPORT_MAX_BYTES,
        "max_files": settings.DATASET_IMPORT_MAX_FILES,
        "max_uncompressed_bytes": settings.DATASET_IMPORT_MAX_UNCOMPRESSED_BYTES,
        "max_pixels": settings.CAPTURE_MAX_PIXELS,
    }


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ApplicationError("A dataset version needs a name.", code="invalid_name")
    if DatasetVersion.objects.filter(name=name).exists():
        raise ApplicationError(
            f"A dataset version named {name!r} exists already.", code="exists", status=409
        )
    return name


def _too_large(size: int) -> ApplicationError:
    return ApplicationError(
        f"The archive is {size} bytes; imports may be at most {settings.IMPORT_MAX_BYTES} bytes.",
        code="too_large",
        status=413,
    )


def _store_archive(source: Path) -> tuple[str, int]:
    """Copy a local archive into the blob store by its sha256: (blob name, size)."""
    digest = hashlib.sha256()
    with open(source, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    relative = content_name(digest.hexdigest(), folder="imports", extension="zip")
    blob_copy_file(source, relative)
    return relative, source.stat().st_size


def _queue(job: DatasetImport) -> None:
    def not_queued(exc: Exception) -> None:
        DatasetImport.objects.filter(pk=job.pk, status=DatasetImportStatus.QUEUED).update(
            status=DatasetImportStatus.FAILED,
            error=f"could not be queued: {type(exc).__name__}: {exc}"[:4000],
            finished_at=timezone.now(),
        )

    task_send_on_commit(TASK_NAME, job.pk, task_id=job.celery_task_id, on_failure=not_queued)


def dataset_import_create(
    *, name: str, archive: IO[bytes], archive_name: str, size: int, created_by: Any
) -> DatasetImport:
    """Store an uploaded archive and queue its import (the task runs once this commits)."""
    name = _check_name(name)
    if size > settings.IMPORT_MAX_BYTES:
        raise _too_large(size)
    temporary_path = getattr(archive, "temporary_file_path", None)
    scratch = None
    try:
        if temporary_path is not None:
            local = Path(temporary_path())
        else:  # a small upload Django kept in memory
            scratch = blob_scratch("upload")
            local = scratch / "archive.zip"
            if hasattr(archive, "seek"):
                archive.seek(0)
            with open(local, "wb") as target:
                shutil.copyfileobj(archive, target, 1 << 20)
        if not zipfile.is_zipfile(local):
            raise ApplicationError("The archive is not a zip file.", code="not_zip", status=415)
        relative, stored_size = _store_archive(local)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    with transaction.atomic():
        job = DatasetImport.objects.create(
            name=name,
            created_by=created_by if getattr(created_by, "pk", None) else None,
            archive=relative,
            archive_name=Path(archive_name or "archive.zip").name[:300],
            archive_size=stored_size,
            celery_task_id=str(uuid.uuid4()),
        )
        _queue(job)
    return job


def _worker_id() -> str:
    return f"{os.uname().nodename} pid {os.getpid()}"


@transaction.atomic
def _claim(import_id: int) -> DatasetImport | None:
    """Queued -> running; a running one whose worker went silent (the message came back after
    the worker died) is taken over. Anything else: None (a redelivered message)."""
    job = DatasetImport.objects.select_for_update().filter(pk=import_id).first()
    if job is None:
        return None
    stale = (
        job.status == DatasetImportStatus.RUNNING
        and job.heartbeat_at is not None
        and (timezone.now() - job.heartbeat_at).total_seconds() > settings.JOB_STALE_SECONDS
    )
    if job.status != DatasetImportStatus.QUEUED and not stale:
        return None
    now = timezone.now()
    job.status = DatasetImportStatus.RUNNING
    job.started_at = job.heartbeat_at = now
    job.worker_id = _worker_id()
    job.progress = 0.0
    job.errors = []
    job.save(
        update_fields=["status", "started_at", "heartbeat_at", "worker_id", "progress", "errors"]
    )
    return job


class _Progress:
    """Progress and counts into the row, at most once a second (and at once when asked)."""

    def __init__(self, job: DatasetImport) -> None:
        self.job = job
        self._last = 0.0

    def __call__(self, progress: float, *, force: bool = False, **counts: int) -> None:
        self.job.progress = round(min(max(progress, 0.0), 1.0), 4)
        self.job.counts.update(counts)
        now = time.monotonic()
        if force or now - self._last >= 1.0:
            self._last = now
            DatasetImport.objects.filter(pk=self.job.pk, status=DatasetImportStatus.RUNNING).update(
                progress=self.job.progress, counts=self.job.counts, heartbeat_at=timezone.now()
            )


def _entry_outside(name: str) -> bool:
    if "\x00" in name or name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        return True
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return ".." in parts


def _unpack(archive: Path, target: Path, report: _Progress) -> tuple[list[str], int]:
    """Extract the zip's safe entries into `target`; (refused entries with reasons, entries).

    Raises ApplicationError for an archive refused as a whole (not a zip, too many entries,
    too large unpacked)."""
    try:
        bundle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ApplicationError(
            f"The archive is not a readable zip file ({exc}).", code="not_zip"
        ) from exc
    with bundle:
        entries = [info for info in bundle.infolist() if not info.is_dir()]
        max_files = settings.DATASET_IMPORT_MAX_FILES
        if len(entries) > max_files:
            raise ApplicationError(
                f"The archive holds {len(entries)} files; imports may hold at most {max_files}.",
                code="too_many_files",
            )
        declared = sum(info.file_size for info in entries)
        max_unpacked = settings.DATASET_IMPORT_MAX_UNCOMPRESSED_BYTES
        if declared > max_unpacked:
            raise ApplicationError(
                f"The archive unpacks to {declared} bytes; imports may unpack to at most "
                f"{max_unpacked} bytes.",
                code="too_large_unpacked",
            )
        refused: list[str] = []
        seen: set[str] = set()
        written = 0
        for index, info in enumerate(entries):
            name = info.filename
            mode = info.external_attr >> 16
            if _entry_outside(name):
                refused.append(f"{name}: {OUTSIDE_ARCHIVE}")
                continue
            if stat.S_ISLNK(mode):
                refused.append(f"{name}: a link (links are refused)")
                continue
            if info.flag_bits & 0x1:
                refused.append(f"{name}: encrypted (refused)")
                continue
            normal = PurePosixPath(name.replace("\\", "/")).as_posix()
            if normal in seen:
                refused.append(f"{name}: listed twice in the archive (the first one is used)")
                continue
            seen.add(normal)
            destination = target / normal
            try:
                destination.parent.mkdir(parents=True, exist_ok=True)
                with bundle.open(info) as source, open(destination, "wb") as sink:
                    # Counted as it is written: a header that understates the size does not
                    # get past the limit either.
                    for chunk in iter(lambda: source.read(1 << 20), b""):
                        written += len(chunk)
                        if written > max_unpacked:
                            raise ApplicationError(
                                f"The archive unpacks to more than {max_unpacked} bytes.",
                                code="too_large_unpacked",
                            )
                        sink.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
                if destination.is_file():
                    destination.unlink()
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                refused.append(f"{name}: cannot be unpacked ({reason})")
            report(_UNPACKED * (index + 1) / max(len(entries), 1), entries=len(entries))
        return refused, len(entries)


def _source_in(root: Path) -> Path:
    """What to import in an unpacked archive: its manifest CSV (the shallowest, `manifest.csv`
    first), else its COCO JSON, else the folder itself (class folders: ok/, scratch/, ...)."""

    def depth_first(paths: list[Path]) -> list[Path]:
        return sorted(
            paths, key=lambda p: (len(p.relative_to(root).parts), p.name != "manifest.csv", p)
        )

    def visible(paths) -> list[Path]:
        hidden = ("__MACOSX", ".")
        return [
            p
            for p in paths
            if p.is_file()
            and not any(part.startswith(hidden) for part in p.relative_to(root).parts)
        ]

    manifests = depth_first(visible(root.rglob("*.csv")))
    if manifests:
        return manifests[0]
    documents = depth_first(visible(root.rglob("*.json")))
    if documents:
        return documents[0]
    return root


def _regions_beside(
    manifest: Path, files: list[ImportedFile]
) -> tuple[list[ImportedFile], dict[str, list[dict]] | None, list[str]]:
    """The regions of a `regions.json` beside the manifest (what our zip export writes: every
    box, polygon and brush region by file), checked against each stored image. A file whose
    regions are refused is left out with the reason; no such file: (files, None, [])."""
    path = manifest.parent / REGIONS_FILE
    if not path.is_file():
        return files, None, []
    if path.stat().st_size > REGIONS_FILE_MAX_BYTES:
        raise ApplicationError(
            f"{REGIONS_FILE} is {path.stat().st_size} bytes; at most {REGIONS_FILE_MAX_BYTES}.",
            code="bad_regions",
        )
    try:
        listed = json.loads(path.read_text(encoding="utf-8"))["images"]
        if not isinstance(listed, dict):
            raise TypeError("images is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ApplicationError(
            f'{REGIONS_FILE} is not {{"images": {{file: [regions]}}}} ({exc}).',
            code="bad_regions",
        ) from exc
    errors: list[str] = []
    by_path: dict[Path, Any] = {}
    for name, regions in listed.items():
        inside = path_inside(manifest.parent, name)
        if inside is None:
            errors.append(f"{REGIONS_FILE}: {name} {OUTSIDE_FOLDER}")
            continue
        by_path[inside.resolve()] = regions
    kept, regions_by_file = [], {}
    for file in files:
        regions = by_path.get(Path(file.item.path).resolve())
        if regions is not None and file.item.label == "defect":
            try:
                regions_by_file[file.source_name] = regions_normalize(
                    regions, width=file.width, height=file.height
                )
            except ApplicationError as exc:
                errors.append(f"{file.source_name}: its regions in {REGIONS_FILE} ({exc.message})")
                continue
        kept.append(file)
    return kept, {k: v for k, v in regions_by_file.items() if v}, errors


def _without_duplicates(files: list[ImportedFile]) -> tuple[list[ImportedFile], list[str]]:
    kept: dict[str, ImportedFile] = {}
    messages = []
    for file in files:
        first = kept.get(file.image_sha256)
        if first is not None:
            messages.append(
                f"{file.source_name}: duplicate of {first.source_name} (same sha256 "
                f"{file.image_sha256[:12]}), imported once"
            )
            continue
        kept[file.image_sha256] = file
    return list(kept.values()), messages


def _relative_messages(messages: list[str], root: Path) -> list[str]:
    # Never show the worker's scratch folder: paths are the archive's own.
    prefix = str(root.resolve()) + os.sep
    return [message.replace(prefix, "").replace(str(root) + os.sep, "") for message in messages]


def _import_source(job: DatasetImport, source: Path, report: _Progress, refused: list[str]):
    """Read, check and store the files of a manifest, COCO JSON or folder; write the version."""
    root = source if source.is_dir() else source.parent

    def stored(done: int, total: int) -> None:
        report(_UNPACKED + (_STORED - _UNPACKED) * done / max(total, 1), rows=total)

    regions_by_file: dict[str, list[dict]] | None = None
    if source.suffix.lower() == ".json":
        files, regions_by_file, errors = coco_files(
            coco_path=source, images_root=root, on_progress=stored
        )
        description = f"Imported from {job.archive_name or source.name} (COCO {source.name})"
    else:
        items, errors, root = _read_items(source)
        files, file_errors = items_store(items, root=root, on_progress=stored)
        errors = errors + file_errors
        if source.is_file():
            files, regions_by_file, region_errors = _regions_beside(source, files)
            errors += region_errors
        description = f"Imported from {job.archive_name or source.name}"
    files, duplicates = _without_duplicates(files)
    messages = _relative_messages(refused + errors + duplicates, root)
    seen_before = (
        DatasetItem.objects.filter(image_sha256__in=[f.image_sha256 for f in files])
        .values("image_sha256")
        .distinct()
        .count()
    )
    counts = {
        "imported": len(files),
        "refused": len(refused) + len(errors),
        "duplicates": len(duplicates),
        "seen_before": seen_before,
    }
    report(_STORED, force=True, **counts)
    job.errors = messages
    try:
        version = dataset_version_from_items(
            name=job.name,
            created_by=job.created_by,
            files=files,
            regions_by_file=regions_by_file,
            split_fractions=DEFAULT_SPLIT_FRACTIONS,
            description=description,
            import_errors=messages,
        )
    except ApplicationError as exc:
        if exc.code == "empty_dataset":
            raise ApplicationError(
                "Nothing to import: every file was refused (see the list).", code="empty_dataset"
            ) from exc
        raise
    return version


def _finish(job: DatasetImport, status: str, *, error: str = "", version=None) -> None:
    values = {
        "status": status,
        "finished_at": timezone.now(),
        "heartbeat_at": timezone.now(),
        "counts": job.counts,
        "errors": job.errors,
        "error": error[:4000],
        "dataset_version": version,
    }
    if status == DatasetImportStatus.DONE:
        values["progress"] = 1.0
    DatasetImport.objects.filter(pk=job.pk, status=DatasetImportStatus.RUNNING).update(**values)
    for field, value in values.items():
        setattr(job, field, value)


def _run(job: DatasetImport, prepare: Callable[[Path, _Progress], tuple[Path, list[str]]]):
    report = _Progress(job)
    scratch = blob_scratch(f"import-{job.pk}")
    try:
        source, refused = prepare(scratch, report)
        version = _import_source(job, source, report, refused)
    except ApplicationError as exc:
        job.errors = job.errors or list(exc.extra.get("import_errors", []) if exc.extra else [])
        _finish(job, DatasetImportStatus.FAILED, error=exc.message)
    except SoftTimeLimitExceeded:
        limit = settings.DATASET_IMPORT_SOFT_TIME_LIMIT
        _finish(job, DatasetImportStatus.FAILED, error=f"took longer than {limit} s: stopped")
    except Exception as exc:
        logger.exception("dataset import %s failed", job.pk)
        _finish(job, DatasetImportStatus.FAILED, error=f"internal error: {type(exc).__name__}")
    else:
        _finish(job, DatasetImportStatus.DONE, version=version)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return job


def _prepare_archive(job: DatasetImport):
    def prepare(scratch: Path, report: _Progress) -> tuple[Path, list[str]]:
        archive = blob_local_path(job.archive)
        unpacked = scratch / "archive"
        unpacked.mkdir()
        try:
            refused, entries = _unpack(archive, unpacked, report)
        finally:
            # On object storage that was a cached copy: an archive is read once, not kept.
            if Path(settings.BLOB_CACHE_ROOT).resolve() in archive.resolve().parents:
                archive.unlink(missing_ok=True)
        report(_UNPACKED, force=True, entries=entries)
        return _source_in(unpacked), refused

    return prepare


def dataset_import_execute(*, import_id: int) -> DatasetImport | None:
    """Run a queued import (the Celery task's body); None when it is not queued any more."""
    job = _claim(import_id)
    if job is None:
        return None
    return _run(job, _prepare_archive(job))


def dataset_import_path(*, name: str, path: str | Path, created_by: Any = None) -> DatasetImport:
    """The command line's import, in this process: a zip (stored like an upload), a folder, a
    manifest CSV or a COCO JSON. Same checks and report as the API."""
    path = Path(path)
    if not path.exists():
        raise ApplicationError(f"{path} does not exist.", code="not_found", status=404)
    name = _check_name(name)
    if path.is_file() and zipfile.is_zipfile(path):
        if path.stat().st_size > settings.IMPORT_MAX_BYTES:
            raise _too_large(path.stat().st_size)
        relative, size = _store_archive(path)
        job = DatasetImport.objects.create(
            name=name,
            created_by=created_by,
            archive=relative,
            archive_name=path.name,
            archive_size=size,
        )
        job = _claim(job.pk)
        return _run(job, _prepare_archive(job))
    job = DatasetImport.objects.create(name=name, created_by=created_by, archive_name=path.name)
    job = _claim(job.pk)

    def prepare(scratch: Path, report: _Progress) -> tuple[Path, list[str]]:
        return (_source_in(path) if path.is_dir() else path), []

    return _run(job, prepare)
