"""Training and evaluation items, the manifest and folder readers that make them, and splits."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from vision.images import image_size, load_image, load_mask

LABELS = ("ok", "defect")
REQUIRED_COLUMNS = ("file", "label")
MANIFEST_COLUMNS = ("file", "label", "defect_type", "mask_file")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
OK_FOLDERS = frozenset({"ok", "good"})
# Folders of a folder dataset that hold no images of their own class.
MASK_FOLDERS = ("masks", "mask")
# How many problems one error message lists before it says how many more there are.
MAX_LISTED_PROBLEMS = 20

Box = tuple[int, int, int, int]


class DatasetError(ValueError):
    """A manifest or folder that cannot be read; the message names the file and line(s)."""

    def __init__(self, path: Path | str, problems: Sequence[str]) -> None:
        self.path = Path(path)
        self.problems = list(problems)
        listed = self.problems[:MAX_LISTED_PROBLEMS]
        more = len(self.problems) - len(listed)
        lines = [f"{self.path}: {len(self.problems)} problem(s)", *(f"  {p}" for p in listed)]
        if more:
            lines.append(f"  ... and {more} more")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class Item:
    """One image for training or evaluation, on disk (`path`) or in memory (`image`)."""

    label: str  # "ok" or "defect"
    path: Path | None = None
    defect_type: str = ""  # "scratch", "crack", "stain", ... ("" for ok)
    mask_path: Path | None = None  # non-zero pixels = defect
    boxes: tuple[Box, ...] = ()  # weak labels, e.g. an inspector's boxes
    image: np.ndarray | None = field(default=None, compare=False, repr=False)
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)
    group: str = ""  # items of one physical object share a group; splits never separate them

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"label must be 'ok' or 'defect', got {self.label!r}")
        if self.path is None and self.image is None:
            raise ValueError("an Item needs a path or an in-memory image")

    def load_image(self) -> np.ndarray:
        """The (H, W, 3) uint8 RGB image."""
        if self.image is not None:
            return self.image
        return load_image(self.path)

    def load_mask(self) -> np.ndarray | None:
        """A bool (H, W) mask the size of the image: from the mask file, the in-memory mask or
        the boxes filled in, in that order; None when the item has none of them."""
        if self.mask_path is not None:
            return load_mask(self.mask_path, size=self._size())
        if self.mask is not None:
            mask = np.asarray(self.mask, dtype=bool)
            width, height = self._size()
            if mask.shape != (height, width):
                raise ValueError(f"mask is {mask.shape}, image is {(height, width)}")
            return mask
        if self.boxes:
            width, height = self._size()
            mask = np.zeros((height, width), bool)
            for x0, y0, x1, y1 in self.boxes:
                mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
            return mask
        return None

    def _size(self) -> tuple[int, int]:
        if self.image is not None:
            return self.image.shape[1], self.image.shape[0]
        return image_size(self.path)


def read_manifest(path: str | Path) -> list[Item]:
    """Items of a manifest CSV (file, label, defect_type, mask_file; optional group and boxes;
    other columns ignored; paths relative to the manifest's folder).

    Every row is checked (label, files present, no duplicate) and all problems are reported
    together in one DatasetError: either the whole manifest is read or nothing is.
    """
    items, problems = _read_manifest(Path(path))
    if problems:
        raise DatasetError(path, problems)
    return items


def read_manifest_report(path: str | Path) -> tuple[list[Item], list[str]]:
    """Like read_manifest, but for bulk imports: the good rows as items, and one message per
    bad row that was left out. A manifest without the required columns still raises.

    Files must lie inside the manifest's folder: a row naming an absolute path, or one that
    `../` (or a link) takes out of it, is refused like a missing file."""
    return _read_manifest(Path(path), confined=True)


def path_inside(folder: str | Path, name: str) -> Path | None:
    """`folder / name` when it stays inside `folder`, or None for an absolute path (POSIX or
    Windows), one that `../` takes out of the folder, or a link that points out of it."""
    if not isinstance(name, str) or not name or "\x00" in name:
        return None
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).drive or name.startswith("\\"):
        return None
    folder = Path(folder)
    joined = _join(folder, name)
    try:
        joined.resolve().relative_to(folder.resolve())
    except (ValueError, OSError):
        return None
    return joined


OUTSIDE_FOLDER = "is outside the folder (absolute paths and ../ are refused)"


def read_folder(path: str | Path) -> list[Item]:
    """Items of a folder laid out by class: `ok/` or `good/` for good phones; `defect/` (with
    images directly in it or in `defect/<defect type>/`) or `<defect type>/` for defects.

    An optional `masks/` folder beside them holds masks matched to images by file stem.
    """
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(root, ["not a folder"])
    masks: dict[str, Path] = {}
    problems: list[str] = []
    for folder_name in MASK_FOLDERS:
        for mask in _images_under(root / folder_name):
            if mask.stem in masks:
                problems.append(f"two masks for {mask.stem!r}: {masks[mask.stem]} and {mask}")
            masks[mask.stem] = mask

    found: list[tuple[str, str, Path]] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        name = folder.name.lower()
        if name.startswith(".") or name in MASK_FOLDERS:
            continue
        if name in OK_FOLDERS:
            found += [("ok", "", image) for image in _images_under(folder)]
        elif name == "defect":
            found += [("defect", "", image) for image in _images_in(folder)]
            for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
                if not sub.name.startswith("."):
                    found += [("defect", sub.name.lower(), image) for image in _images_under(sub)]
        else:
            found += [("defect", name, image) for image in _images_under(folder)]
    if not found:
        problems.append("no images found in ok/, good/, defect/ or <defect type>/ folders")

    by_stem: dict[str, Path] = {}
    items = []
    for label, defect_type, image in found:
        mask = masks.get(image.stem)
        if mask is not None and by_stem.setdefault(image.stem, image) != image:
            problems.append(f"mask {mask} could belong to {by_stem[image.stem]} or {image}")
        items.append(Item(label=label, path=image, defect_type=defect_type, mask_path=mask))
    if problems:
        raise DatasetError(root, problems)
    return items


# Folders a zip made on a Mac or by a tool carries beside the classes: never a class.
IGNORED_FOLDERS = frozenset({"__macosx"})


def class_folder_root(path: str | Path) -> Path:
    """The folder that holds the class folders: `path`, or the one folder it wraps them in (a
    zip of `dataset/ok/...`, `dataset/scratch/...`), however deep, as long as that folder holds
    only folders and is not a class (`ok/`, `good/`, `defect/`) itself."""
    root = Path(path)
    while True:
        entries = [p for p in root.iterdir() if not _hidden(p.name)]
        folders = [p for p in entries if p.is_dir()]
        if len(entries) != 1 or len(folders) != 1:
            return root
        inner = folders[0]
        if inner.name.lower() in OK_FOLDERS | {"defect"} or not any(
            p.is_dir() and not _hidden(p.name) for p in inner.iterdir()
        ):
            return root
        root = inner


def _hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in IGNORED_FOLDERS


def read_folder_report(path: str | Path) -> tuple[list[Item], list[str]]:
    """Like read_folder, but for bulk imports: the good images as items, and one message per
    file left out (not an image, not in a class folder, a mask that two images could claim).
    A folder without any class folder image still raises DatasetError.

    Class folders: `ok/` or `good/` (any case) for good phones; `defect/` (images in it, or in
    `defect/<defect type>/`) or `<defect type>/` (the folder's name in lower case) for defects;
    `masks/` holds masks matched by file stem. Hidden files and `__MACOSX/` are skipped.
    """
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(root, ["not a folder"])
    problems: list[str] = []

    def name(file: Path) -> str:
        return file.relative_to(root).as_posix()

    def visible_files(folder: Path) -> list[Path]:
        return sorted(
            p
            for p in folder.rglob("*")
            if p.is_file() and not any(_hidden(part) for part in p.relative_to(folder).parts)
        )

    def images_of(folder: Path) -> list[Path]:
        images = []
        for file in visible_files(folder):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                images.append(file)
            else:
                problems.append(f"{name(file)}: not an image file ({file.suffix or 'no suffix'})")
        return images

    masks: dict[str, list[Path]] = {}
    for folder_name in MASK_FOLDERS:
        for mask in _images_under(root / folder_name):
            masks.setdefault(mask.stem, []).append(mask)
    found: list[tuple[str, str, Path]] = []
    for entry in sorted(root.iterdir()):
        if _hidden(entry.name) or entry.name.lower() in MASK_FOLDERS:
            continue
        if not entry.is_dir():
            problems.append(f"{name(entry)}: not in a class folder (ok/, good/, <defect type>/)")
            continue
        label_name = entry.name.lower()
        if label_name in OK_FOLDERS:
            found += [("ok", "", image) for image in images_of(entry)]
        elif label_name == "defect":
            for file in images_of(entry):
                inner = file.relative_to(entry).parts
                found.append(("defect", inner[0].lower() if len(inner) > 1 else "", file))
        else:
            found += [("defect", label_name, image) for image in images_of(entry)]
    if not found:
        raise DatasetError(
            root, ["no images found in ok/, good/, defect/ or <defect type>/ folders"]
        )

    stems: dict[str, int] = {}
    for _label, _type, image in found:
        stems[image.stem] = stems.get(image.stem, 0) + 1
    items = []
    for label, defect_type, image in found:
        candidates = masks.get(image.stem, [])
        if candidates and (len(candidates) > 1 or stems[image.stem] > 1):
            problems.append(
                f"{name(image)}: its mask is ambiguous ({', '.join(name(m) for m in candidates)}"
                f" for {stems[image.stem]} image(s) named {image.stem!r}); left out"
            )
            continue
        mask = candidates[0] if candidates else None
        items.append(Item(label=label, path=image, defect_type=defect_type, mask_path=mask))
    return items, problems


def write_manifest(items: Iterable[Item], path: str | Path) -> Path:
    """Write items as a manifest CSV with paths relative to its folder (atomically, so a reader
    never sees half a file). Group and boxes columns are added when any item has them."""
    path = Path(path)
    items = list(items)
    folder = path.parent.resolve()
    for index, item in enumerate(items):
        if item.path is None:
            raise ValueError(f"item {index} has no file: write its image first")
        if item.mask_path is None and item.mask is not None:
            raise ValueError(f"item {index} has an in-memory mask: write the mask file first")
    columns = list(MANIFEST_COLUMNS)
    if any(item.group for item in items):
        columns.append("group")
    if any(item.boxes for item in items):
        columns.append("boxes")

    def relative(file: Path) -> str:
        return Path(os.path.relpath(Path(file).resolve(), folder)).as_posix()

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            writer.writerow(columns)
            for item in items:
                row = [
                    relative(item.path),
                    item.label,
                    item.defect_type,
                    relative(item.mask_path) if item.mask_path else "",
                ]
                if "group" in columns:
                    row.append(item.group)
                if "boxes" in columns:
                    row.append(json.dumps([list(box) for box in item.boxes]) if item.boxes else "")
                writer.writerow(row)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def split_items(
    items: Sequence[Item], *, fractions: Sequence[float] = (0.8, 0.2), seed: int = 0
) -> tuple[list[Item], ...]:
    """Split items into len(fractions) lists (e.g. train, validation, test) by a hash of each
    item's group (its file name, or its pixels, when it has no group).

    One group never lands in two splits, and adding items never moves existing ones. Only for
    a tiny set where a split would lack one of the labels is the nearest group of that label
    moved in, so each split can hold both ok and defect phones.
    """
    fractions = [float(f) for f in fractions]
    if len(fractions) < 2 or min(fractions) <= 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be two or more positive shares summing to 1: {fractions}")
    edges = np.cumsum(fractions)
    groups: dict[str, list[Item]] = {}
    for item in items:
        groups.setdefault(_group_key(item), []).append(item)
    position = {key: _unit_hash(seed, key) for key in groups}
    split_of = {
        key: min(int(np.searchsorted(edges, u, side="right")), len(edges) - 1)
        for key, u in position.items()
    }

    for label in LABELS:
        keys = [key for key, members in groups.items() if _group_label(members) == label]
        if len(keys) < len(fractions):
            continue
        for target in range(len(fractions)):
            if any(split_of[key] == target for key in keys):
                continue
            centre = edges[target] - fractions[target] / 2
            movable = [key for key in keys if sum(split_of[k] == split_of[key] for k in keys) > 1]
            nearest = min(movable, key=lambda key: (abs(position[key] - centre), key))
            split_of[nearest] = target

    splits: tuple[list[Item], ...] = tuple([] for _ in fractions)
    for item in items:
        splits[split_of[_group_key(item)]].append(item)
    return splits


def _group_key(item: Item) -> str:
    if item.group:
        return f"group:{item.group}"
    if item.path is not None:
        # The file name, not the full path, so a split is the same on every machine.
        return f"file:{Path(item.path).name}"
    return "pixels:" + hashlib.sha256(np.ascontiguousarray(item.image).tobytes()).hexdigest()


def _group_label(members: list[Item]) -> str:
    return "defect" if any(item.label == "defect" for item in members) else "ok"


def _unit_hash(seed: int, key: str) -> float:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _read_manifest(path: Path, *, confined: bool = False) -> tuple[list[Item], list[str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as stream:
            reader = csv.DictReader(stream)
            columns = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise DatasetError(
                    path,
                    [f"line 1: missing column(s) {', '.join(missing)} (found {columns or 'none'})"],
                )
            rows = []
            for row in reader:
                cleaned = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k}
                rows.append((reader.line_num, cleaned))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DatasetError(path, [f"cannot read the manifest: {error}"]) from None

    folder = path.parent
    items: list[Item] = []
    problems: list[str] = []
    first_line: dict[Path, int] = {}
    for line, row in rows:
        row_problems, item = _parse_row(row, folder, confined=confined)
        if row.get("file") and (not confined or path_inside(folder, row["file"])):
            key = (folder / row["file"]).resolve()
            if key in first_line:
                row_problems.append(
                    f"{row['file']} is listed again (first on line {first_line[key]})"
                )
            else:
                first_line[key] = line
        if row_problems:
            problems += [f"line {line}: {problem}" for problem in row_problems]
        else:
            items.append(item)
    return items, problems


def _parse_row(
    row: dict[str, str], folder: Path, *, confined: bool = False
) -> tuple[list[str], Item | None]:
    problems = []
    file = row.get("file", "")
    label = row.get("label", "").lower()
    defect_type = row.get("defect_type", "").lower()
    mask_file = row.get("mask_file", "")
    if not file:
        return ["empty file name"], None
    if confined:
        # Checked before anything else: whether such a file exists is not told either.
        outside = [
            f"{what} {name} {OUTSIDE_FOLDER}"
            for what, name in (("image", file), ("mask", mask_file))
            if name and path_inside(folder, name) is None
        ]
        if outside:
            return outside, None
    image_path = _join(folder, file)
    if label not in LABELS:
        problems.append(f"label {row.get('label', '')!r} is not ok or defect")
    if defect_type == "none":
        defect_type = ""
    if label == "ok" and defect_type:
        problems.append(f"label ok with defect_type {defect_type!r}")
    if not image_path.is_file():
        problems.append(f"image {file} not found")
    mask_path = _join(folder, mask_file) if mask_file else None
    if mask_path is not None and not mask_path.is_file():
        problems.append(f"mask {mask_file} not found")
    boxes: tuple[Box, ...] = ()
    if row.get("boxes"):
        try:
            boxes = tuple(_box(value) for value in json.loads(row["boxes"]))
        except (ValueError, TypeError):
            problems.append(f"boxes {row['boxes']!r} is not a JSON list of [x0, y0, x1, y1]")
    if problems:
        return problems, None
    item = Item(
        label=label,
        path=image_path,
        defect_type=defect_type,
        mask_path=mask_path,
        boxes=boxes,
        group=row.get("group", ""),
    )
    return [], item


def _join(folder: Path, relative: str) -> Path:
    # Collapse "images/../x.png" so the same file always makes an equal Item.
    return Path(os.path.normpath(folder / relative))


def _box(value: Sequence[float]) -> Box:
    x0, y0, x1, y1 = (int(v) for v in value)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"empty box {value}")
    return x0, y0, x1, y1


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def _images_under(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
