"""Dataset versions: freezing reviewed labels, importing manifests, folders and COCO files.

Every version is written in one transaction after its files are stored (content-addressed,
so a failed import leaves at most unreferenced copies, never a half-made version).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from core import selectors as core_selectors
from core.blobs import blob_local_path, blob_write
from core.errors import ApplicationError
from labeling import regions as region_tools
from labeling.coco import coco_document, coco_read
from labeling.models import (
    DatasetItem,
    DatasetSplit,
    DatasetVersion,
    LabelTask,
    LabelTaskStatus,
)
from vision.datasets import (
    OUTSIDE_FOLDER,
    DatasetError,
    Item,
    class_folder_root,
    path_inside,
    read_folder_report,
    read_manifest_report,
)
from vision.images import ImageError, decode_image, image_size, load_mask

logger = logging.getLogger(__name__)

SPLITS = (DatasetSplit.TRAIN, DatasetSplit.VALIDATION, DatasetSplit.TEST)
DEFAULT_SPLIT_FRACTIONS = (0.7, 0.15, 0.15)


@dataclass
class FrozenItem:
    """One item on its way into a version (files already stored under MEDIA_ROOT)."""

    image: str
    image_sha256: str
    label: str
    group: str
    defect_type: str = ""
    regions: list[dict] = field(default_factory=list)
    mask: str = ""
    line_code: str = ""
    source_name: str = ""
    task_id: int | None = None
    split: str = ""


def _check_fractions(split_fractions: Sequence[float]) -> list[float]:
    fractions = [float(f) for f in split_fractions]
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ApplicationError(
            "split_fractions must be three positive shares (train, validation, test) summing to 1.",
            code="invalid_split",
        )
    return fractions


def split_of_group(group: str, fractions: Sequence[float], seed: int) -> str:
    """The split of a group: a hash of its name and the seed alone (the same formula as
    vision.datasets.split_items), so a capture keeps its split in every later version.

    Unlike split_items, tiny sets are not rebalanced: that would move groups between
    versions, and a stable split matters more than both labels in a 10-image validation set.
    """
    digest = hashlib.sha256(f"{seed}:group:{group}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for split, fraction in zip(SPLITS, fractions, strict=True):
        edge += fraction
        if position < edge:
            return split.value
    return SPLITS[-1].value


def _assign_splits(items: list[FrozenItem], fractions: list[float], seed: int) -> None:
    for item in items:
        item.split = split_of_group(item.group, fractions, seed)


def _content_hash(items: Iterable[FrozenItem], fractions: list[float], seed: int) -> str:
    rows = sorted(
        [
            item.image_sha256,
            item.label,
            item.defect_type,
            item.regions,
            Path(item.mask).name if item.mask else "",
            item.split,
            item.group,
        ]
        for item in items
    )
    canonical = json.dumps(
        {"fractions": fractions, "seed": seed, "items": rows}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _counts(items: Sequence[FrozenItem]) -> dict[str, Any]:
    split_label: dict[str, dict[str, int]] = {s.value: {"ok": 0, "defect": 0} for s in SPLITS}
    for item in items:
        split_label[item.split][item.label] += 1
    return {
        "total": len(items),
        "label": dict(Counter(item.label for item in items)),
        "defect_type": dict(Counter(item.defect_type for item in items if item.label == "defect")),
        "line": dict(Counter(item.line_code or "(none)" for item in items)),
        "split": {s.value: sum(1 for i in items if i.split == s) for s in SPLITS},
        "split_label": split_label,
        "groups": len({item.group for item in items}),
    }


def _version_write(
    *,
    name: str,
    created_by: Any,
    items: list[FrozenItem],
    split_fractions: Sequence[float],
    seed: int,
    description: str,
    import_errors: list[str] | None = None,
) -> DatasetVersion:
    fractions = _check_fractions(split_fractions)
    if not name or not name.strip():
        raise ApplicationError("A dataset version needs a name.", code="invalid_name")
    if not items:
        raise ApplicationError(
            "Nothing to freeze: no reviewed labels match.",
            code="empty_dataset",
            extra={"import_errors": import_errors or []},
        )
    _assign_splits(items, fractions, seed)
    with transaction.atomic():
        if DatasetVersion.objects.filter(name=name).exists():
            raise ApplicationError(
                f"A dataset version named {name!r} exists already.", code="exists", status=409
            )
        version = DatasetVersion.objects.create(
            name=name.strip(),
            created_by=created_by if getattr(created_by, "pk", None) else None,
            description=description,
            content_hash=_content_hash(items, fractions, seed),
            split_fractions=fractions,
            seed=seed,
            counts=_counts(items),
            import_errors=import_errors or [],
        )
        DatasetItem.objects.bulk_create(
            DatasetItem(
                dataset_version=version,
                image=item.image,
                image_sha256=item.image_sha256,
                label=item.label,
                defect_type=item.defect_type if item.label == "defect" else "",
                regions=item.regions if item.label == "defect" else [],
                mask=item.mask,
                split=item.split,
                group=item.group,
                line_code=item.line_code,
                source_name=item.source_name,
                task_id=item.task_id,
            )
            for item in items
        )
    return version


def _polygon_mask(regions: list[dict], image: str, width: int | None, height: int | None) -> str:
    """Polygons and brush masks do not fit Item.boxes: they go into a mask file (with the boxes
    filled in), which training reads as the item's mask."""
    if not any(r.get("shape") in ("polygon", "mask") for r in regions):
        return ""
    if not width or not height:
        width, height = image_size(blob_local_path(image))
    mask = region_tools.regions_mask(regions, width=width, height=height)
    relative, _ = blob_write(region_tools.mask_png(mask), extension="png", folder="masks")
    return relative


def reviewed_tasks(
    *,
    line: Any = None,
    sources: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    tasks: Iterable[Any] | None = None,
):
    """Tasks whose annotation a reviewer (or two agreeing labelers) accepted, by filters."""
    queryset = LabelTask.objects.filter(
        status=LabelTaskStatus.DONE, accepted_annotation__isnull=False
    ).select_related("accepted_annotation", "line", "capture")
    if tasks is not None:
        queryset = queryset.filter(pk__in=[getattr(t, "pk", t) for t in tasks])
    if line is not None:
        queryset = queryset.filter(line__code=getattr(line, "code", line))
    if sources:
        queryset = queryset.filter(source__in=list(sources))
    if since is not None:
        queryset = queryset.filter(reviewed_at__gte=since)
    if until is not None:
        queryset = queryset.filter(reviewed_at__lt=until)
    return queryset.order_by("reviewed_at", "id")


def dataset_version_create(
    *,
    name: str,
    created_by: Any,
    line: Any = None,
    sources: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    tasks: Iterable[Any] | None = None,
    split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
    seed: int = 0,
    description: str = "",
) -> DatasetVersion:
    """Freeze every reviewed (accepted) annotation that matches the filters, now.

    One item per image: when a capture was labeled twice (an override and an audit task),
    the latest review wins. Polygons and brush masks are rasterised into a mask file beside
    the boxes.
    """
    latest: dict[str, FrozenItem] = {}
    for task in reviewed_tasks(line=line, sources=sources, since=since, until=until, tasks=tasks):
        annotation = task.accepted_annotation
        image = task.image or (task.capture.image if task.capture_id else "")
        if not image:
            continue
        regions = (
            region_tools.regions_normalize(annotation.regions, width=task.width, height=task.height)
            if annotation.label == "defect"
            else []
        )
        key = task.capture.image_sha256 if task.capture_id else image
        latest[key] = FrozenItem(
            image=image,
            image_sha256=task.capture.image_sha256 if task.capture_id else Path(image).stem,
            label=annotation.label,
            group=task.group or str(task.capture_id or image),
            defect_type=region_tools.main_defect_type(regions)
            if annotation.label == "defect"
            else "",
            regions=regions,
            mask=_polygon_mask(regions, image, task.width, task.height),
            line_code=task.line.code if task.line_id else "",
            source_name=task.source_detail or Path(image).name,
            task_id=task.pk,
        )
    filters = [
        f"line={getattr(line, 'code', line)}" if line is not None else "",
        f"sources={','.join(sources)}" if sources else "",
        f"since={since.isoformat()}" if since else "",
        f"until={until.isoformat()}" if until else "",
        "chosen tasks" if tasks is not None else "",
    ]
    described = "; ".join(f for f in filters if f) or "all reviewed labels"
    return _version_write(
        name=name,
        created_by=created_by,
        items=list(latest.values()),
        split_fractions=split_fractions,
        seed=seed,
        description=description or f"Reviewed annotations ({described})",
    )


@dataclass
class ImportedFile:
    """One good file of a bulk import, copied into MEDIA_ROOT."""

    image: str
    image_sha256: str
    width: int
    height: int
    item: Item
    mask: str = ""
    source_name: str = ""


def items_store(
    items: Sequence[Item],
    *,
    root: Path,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[list[ImportedFile], list[str]]:
    """Check every file of an import (image decodes, mask readable and the image's size) and
    copy the good ones content-addressed; one message per bad file, the good ones go on.
    `on_progress(done, total)` is called after each file."""
    stored: list[ImportedFile] = []
    errors: list[str] = []
    for index, item in enumerate(items):
        if on_progress is not None and index:
            on_progress(index, len(items))
        name = _display_name(item.path, root)
        outside = [
            path for path in (item.path, item.mask_path) if path and not _within(Path(path), root)
        ]
        if outside:
            # A manifest row or a COCO entry has been checked already; this also catches a
            # link inside an imported folder that points out of it.
            errors.append(f"{name}: {Path(outside[0]).name} {OUTSIDE_FOLDER}")
            continue
        try:
            data = Path(item.path).read_bytes()
            image = decode_image(data, max_pixels=settings.CAPTURE_MAX_PIXELS)
        except ImageError as exc:
            errors.append(f"{name}: not a readable image ({exc})")
            continue
        except OSError as exc:
            errors.append(f"{name}: cannot be read ({exc.strerror or exc})")
            continue
        height, width = image.shape[:2]
        mask = ""
        if item.mask_path is not None:
            try:
                mask_array = load_mask(item.mask_path)
                if mask_array.shape != (height, width):
                    raise ValueError(f"mask is {mask_array.shape[::-1]}, image {(width, height)}")
                mask, _ = blob_write(
                    region_tools.mask_png(mask_array), extension="png", folder="masks"
                )
            except (ImageError, OSError, ValueError) as exc:
                errors.append(f"{name}: bad mask {_display_name(item.mask_path, root)} ({exc})")
                continue
        extension = Path(item.path).suffix or ".jpg"
        relative, sha256 = blob_write(data, extension=extension, folder="datasets")
        stored.append(
            ImportedFile(
                relative, sha256, width, height, item, mask, _display_name(item.path, root)
            )
        )
    if on_progress is not None:
        on_progress(len(items), len(items))
    return stored, errors


def _within(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        return False
    return True


def _display_name(path: Any, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return Path(path).name


def _item_regions(item: Item) -> list[dict]:
    defect_type = item.defect_type or "other"
    return [
        {"shape": "box", "box": [float(v) for v in box], "defect_type": defect_type}
        for box in item.boxes
    ]


def _frozen_from_imported(files: Sequence[ImportedFile]) -> list[FrozenItem]:
    frozen = []
    for file in files:
        item = file.item
        frozen.append(
            FrozenItem(
                image=file.image,
                image_sha256=file.image_sha256,
                label=item.label,
                group=item.group or Path(file.source_name).name,
                defect_type=(item.defect_type or "other")[:32] if item.label == "defect" else "",
                regions=_item_regions(item) if item.label == "defect" else [],
                mask=file.mask,
                source_name=file.source_name,
            )
        )
    return frozen


def _read_items(path: Path) -> tuple[list[Item], list[str], Path]:
    """A manifest CSV (bad rows reported) or a class folder (ok/, scratch/, ...; files that
    are not images reported; a folder wrapping them is looked into); raises for an unreadable
    one."""
    try:
        if path.is_dir():
            root = class_folder_root(path)
            items, errors = read_folder_report(root)
            return items, errors, root
        items, errors = read_manifest_report(path)
        return items, errors, path.parent
    except DatasetError as exc:
        raise ApplicationError(
            f"Cannot import {path.name}: " + "; ".join(exc.problems[:5]),
            code="bad_manifest",
            extra={"import_errors": exc.problems},
        ) from exc


def dataset_version_from_manifest(
    *,
    name: str,
    manifest_path: str | Path,
    created_by: Any,
    split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
    seed: int = 0,
    description: str = "",
) -> DatasetVersion:
    """Import a manifest CSV (file,label,defect_type,mask_file[,group,boxes]) or a class folder
    as a new version: the images are copied into MEDIA_ROOT, bad rows and files are listed in
    `import_errors` and left out, the good ones are imported."""
    path = Path(manifest_path)
    items, errors, root = _read_items(path)
    stored, file_errors = items_store(items, root=root)
    return _version_write(
        name=name,
        created_by=created_by,
        items=_frozen_from_imported(stored),
        split_fractions=split_fractions,
        seed=seed,
        description=description or f"Imported from {path.name}",
        import_errors=errors + file_errors,
    )


def dataset_version_from_items(
    *,
    name: str,
    created_by: Any,
    files: Sequence[ImportedFile],
    regions_by_file: dict[str, list[dict]] | None = None,
    split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
    seed: int = 0,
    description: str = "",
    import_errors: list[str] | None = None,
) -> DatasetVersion:
    """A version from files already stored (COCO import), with their own regions."""
    frozen = _frozen_from_imported(files)
    for item, file in zip(frozen, files, strict=True):
        regions = (regions_by_file or {}).get(file.source_name)
        if regions is not None and item.label == "defect":
            item.regions = regions
            item.defect_type = region_tools.main_defect_type(regions)
            if not item.mask:
                item.mask = _polygon_mask(regions, item.image, file.width, file.height)
    return _version_write(
        name=name,
        created_by=created_by,
        items=frozen,
        split_fractions=split_fractions,
        seed=seed,
        description=description,
        import_errors=import_errors,
    )


def dataset_version_coco(*, dataset_version: DatasetVersion) -> dict[str, Any]:
    """The version as COCO JSON; file names are the stored images' paths under MEDIA_ROOT."""
    images = []
    for row in dataset_version.items.order_by("id"):
        width, height = image_size(blob_local_path(row.image))
        images.append(
            {
                "file_name": row.image,
                "width": width,
                "height": height,
                "label": row.label,
                "defect_type": row.defect_type,
                "split": row.split,
                "group": row.group,
                "source_name": row.source_name,
                "mask_file": row.mask,
                "regions": row.regions,
                "mask": _exported_mask(row, width, height),
                "mask_defect_type": row.defect_type or "other",
            }
        )
    return coco_document(
        images,
        description=f"{dataset_version.name} ({dataset_version.pk})",
        taxonomy=core_selectors.defect_type_names_active(),
    )


def _exported_mask(row: DatasetItem, width: int, height: int) -> Any:
    """The item's pixel mask for the COCO export, or None when it has none or it is only its
    own boxes and polygons rasterised (those are exported as themselves)."""
    if not row.mask or row.label != "defect":
        return None
    try:
        mask = load_mask(blob_local_path(row.mask), size=(width, height))
    except (OSError, ImageError):  # a mask file gone from the store: its boxes still export
        logger.warning("dataset item %s: mask %s cannot be read", row.pk, row.mask)
        return None
    if (
        row.regions
        and (mask == region_tools.regions_mask(row.regions, width=width, height=height)).all()
    ):
        return None
    return mask


def dataset_version_from_coco(
    *,
    name: str,
    coco_path: str | Path,
    images_root: str | Path | None = None,
    created_by: Any,
    split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
    seed: int = 0,
) -> DatasetVersion:
    """Import a COCO JSON (boxes, polygons; `label` per image optional) with its images
    (file names relative to images_root, by default the JSON's folder)."""
    path = Path(coco_path)
    stored, regions_by_file, errors = coco_files(
        coco_path=path, images_root=Path(images_root) if images_root else path.parent
    )
    return dataset_version_from_items(
        name=name,
        created_by=created_by,
        files=stored,
        regions_by_file=regions_by_file,
        split_fractions=split_fractions,
        seed=seed,
        description=f"Imported from COCO {path.name}",
        import_errors=errors,
    )


def coco_files(
    *,
    coco_path: Path,
    images_root: Path,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[list[ImportedFile], dict[str, list[dict]], list[str]]:
    """The images of a COCO JSON checked and stored (with their RLE masks), the regions of
    each by source name, and one message per refused entry."""
    path, root = coco_path, images_root
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ApplicationError(f"Cannot read {path.name}: {exc}", code="bad_coco") from exc
    entries, errors = coco_read(document)
    items, missing = [], []
    for file_name, entry in entries.items():
        image_path = path_inside(root, file_name)
        if image_path is None:
            missing.append(f"{file_name}: image {OUTSIDE_FOLDER}")
            continue
        if not image_path.is_file():
            missing.append(f"{file_name}: image not found")
            continue
        group = next(
            (i.get("group") for i in document["images"] if i.get("file_name") == file_name), ""
        )
        defect_type = entry.get("mask_defect_type") if not entry["regions"] else ""
        items.append(
            Item(
                label=entry["label"],
                path=image_path,
                group=group or "",
                defect_type=defect_type or "",
            )
        )
    stored, file_errors = items_store(items, root=root, on_progress=on_progress)
    kept, mask_errors = [], []
    for file in stored:
        entry = entries[_entry_name(file, entries)]
        outside = [
            r["box"]
            for r in entry["regions"]
            if r["shape"] == "mask" and (r["box"][2] > file.width or r["box"][3] > file.height)
        ]
        if outside:
            mask_errors.append(
                f"{file.source_name}: RLE region {outside[0]} reaches outside the image "
                f"{(file.width, file.height)}"
            )
            continue
        mask = entry.get("mask")
        if mask is not None:
            if mask.shape != (file.height, file.width):
                mask_errors.append(
                    f"{file.source_name}: RLE mask is {mask.shape[::-1]}, image "
                    f"{(file.width, file.height)}"
                )
                continue
            file.mask, _ = blob_write(region_tools.mask_png(mask), extension="png", folder="masks")
        kept.append(file)
    regions_by_file = {
        file.source_name: entries[_entry_name(file, entries)]["regions"]
        for file in kept
        if entries[_entry_name(file, entries)]["regions"] or file.mask == ""
    }
    return kept, regions_by_file, errors + missing + file_errors + mask_errors


def _entry_name(file: ImportedFile, entries: dict[str, Any]) -> str:
    if file.source_name in entries:
        return file.source_name
    return next(name for name in entries if Path(name).name == Path(file.source_name).name)
