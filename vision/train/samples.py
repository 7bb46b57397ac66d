"""Training items loaded as samples with whatever supervision they carry, and a data hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vision.datasets import Item


@dataclass(eq=False)
class Sample:
    image: np.ndarray  # (H, W, 3) uint8
    label: int  # 1 defect, 0 ok
    pixel_mask: np.ndarray | None  # bool (H, W): every pixel's truth is known
    boxes: tuple[tuple[int, int, int, int], ...]  # weak: somewhere inside each box
    defect_pixels: np.ndarray | None  # (K, 2) y, x to centre crops on
    # A mask over a large share of the image outlines an area rather than tracing the defect:
    # its cells are trained as one bag (some cell inside is a defect), not cell by cell.
    coarse: bool = False


def data_hash(items: Sequence[Item]) -> str:
    """A hash of the training data list: which files (or synthetic ids) with which labels."""
    rows = sorted(
        json.dumps(
            [
                str(item.path) if item.path else item.group,
                item.label,
                item.defect_type,
                str(item.mask_path or ""),
                [list(box) for box in item.boxes],
            ]
        )
        for item in items
    )
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def load_sample(item: Item, coarse_fraction: float = 1.0) -> Sample:
    """The item's image and supervision: its mask, else its boxes, else its label alone; a
    mask over more than `coarse_fraction` of the image is coarse."""
    image = item.load_image()
    label = 1 if item.label == "defect" else 0
    pixel_mask = None
    if item.mask is not None or item.mask_path is not None:
        pixel_mask = item.load_mask()
        if pixel_mask is not None and label == 1 and not pixel_mask.any():
            pixel_mask = None  # a defect with an empty mask: the defect is unlocated, not absent
    boxes = tuple(item.boxes) if pixel_mask is None and label == 1 else ()
    if label == 0:
        pixel_mask = np.zeros(image.shape[:2], dtype=bool)
    defect_pixels = None
    if pixel_mask is not None and pixel_mask.any():
        defect_pixels = np.argwhere(pixel_mask)
    elif boxes:
        defect_pixels = np.array([((y0 + y1) // 2, (x0 + x1) // 2) for x0, y0, x1, y1 in boxes])
    coarse = label == 1 and pixel_mask is not None and pixel_mask.mean() > coarse_fraction
    return Sample(image, label, pixel_mask, boxes, defect_pixels, coarse)
