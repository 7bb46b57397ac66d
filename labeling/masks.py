"""Pixel masks as COCO run-length encoding, and the brush regions (`"shape": "mask"`) made of them.

A brush region is `{"shape": "mask", "box": [x0, y0, x1, y1], "mask": {"size": [h, w],
"counts": "..."}, "defect_type": ...}`: the box is in whole image pixels (x1, y1 exclusive) and
the mask covers exactly that box (`size` is `[y1 - y0, x1 - x0]`), run-length encoded column by
column starting with a run of zeros, as COCO does. Counts may come as a list (uncompressed RLE)
or a string (COCO's compressed form); they are stored compressed, with the box shrunk to the
painted pixels. Pure functions; no database.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.errors import ApplicationError

# A brush region is at most this many pixels (its box) and this many runs: a thin scratch
# across a large image is a few thousand runs; these bounds keep a hostile one cheap to refuse.
MAX_MASK_PIXELS = 16_000_000
MAX_MASK_RUNS = 100_000
MAX_MASK_COUNTS_CHARS = 400_000


def mask_rle(mask: np.ndarray) -> dict[str, Any]:
    """Uncompressed COCO RLE of a bool (H, W) mask."""
    height, width = mask.shape
    flat = np.asarray(mask, dtype=bool).flatten(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(edges).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]  # RLE starts with the zeros' run, even an empty one
    return {"size": [int(height), int(width)], "counts": [int(c) for c in counts]}


def counts_from_string(text: str) -> list[int]:
    """The counts of a compressed RLE string (pycocotools' rleFrString)."""
    counts: list[int] = []
    position = 0
    data = text.encode("ascii")
    while position < len(data):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(data):
                raise ValueError("compressed RLE ends in the middle of a count")
            char = data[position] - 48
            if not 0 <= char < 64:
                raise ValueError(f"compressed RLE holds {chr(data[position])!r}")
            value |= (char & 0x1F) << (5 * shift)
            more = bool(char & 0x20)
            position += 1
            shift += 1
            if not more and char & 0x10:
                value |= -1 << (5 * shift)
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def counts_to_string(counts: list[int]) -> str:
    """Compressed RLE counts (pycocotools' rleToString): each count as the difference to the
    one two before it, in 5-bit groups."""
    chars = []
    for index, count in enumerate(counts):
        value = int(count) - (int(counts[index - 2]) if index > 2 else 0)
        more = True
        while more:
            group = value & 0x1F
            value >>= 5
            more = value != -1 if group & 0x10 else value != 0
            if more:
                group |= 0x20
            chars.append(chr(group + 48))
    return "".join(chars)


def rle_mask(segmentation: dict[str, Any]) -> np.ndarray:
    """A bool (H, W) mask from COCO RLE, compressed (string counts) or not (a list)."""
    height, width = (int(v) for v in segmentation["size"])
    counts = segmentation["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        counts = counts_from_string(counts)
    counts = [int(c) for c in counts]
    if any(c < 0 for c in counts) or sum(counts) != height * width:
        raise ValueError(f"RLE counts cover {sum(counts)} pixels, the image {height * width}")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape((height, width), order="F")


def _invalid(message: str) -> ApplicationError:
    return ApplicationError(message, code="invalid_mask")


def _whole(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise _invalid(f"A mask's {what} must be a whole number of pixels, got {value!r}.")
    return int(value)


def _checked_counts(counts: Any, pixels: int) -> list[int]:
    if isinstance(counts, str):
        if len(counts) > MAX_MASK_COUNTS_CHARS:
            raise _invalid(f"A mask's counts may be at most {MAX_MASK_COUNTS_CHARS} characters.")
        try:
            counts = counts_from_string(counts)
        except (ValueError, UnicodeEncodeError) as exc:
            raise _invalid(f"A mask's counts are not compressed RLE ({exc}).") from None
    elif isinstance(counts, list):
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
            raise _invalid("A mask's counts must be whole numbers.")
    else:
        raise _invalid("A mask's counts are a list of run lengths or a compressed RLE string.")
    if len(counts) > MAX_MASK_RUNS:
        raise _invalid(f"A mask may have at most {MAX_MASK_RUNS} runs; this one has {len(counts)}.")
    if any(c < 0 for c in counts):
        raise _invalid("A mask's run lengths cannot be negative.")
    if sum(counts) != pixels:
        raise _invalid(
            f"A mask's runs cover {sum(counts)} pixels, its size {pixels}: they must agree."
        )
    return counts


def mask_region_pixels(region: dict[str, Any]) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """The integer box of a (normalised) brush region and its bool (h, w) mask."""
    x0, y0, x1, y1 = (int(v) for v in region["box"])
    return (x0, y0, x1, y1), rle_mask(region["mask"])


def mask_region_paste(region: dict[str, Any], target: np.ndarray) -> None:
    """Paint a brush region into a bool (H, W) image mask (clipped to it)."""
    (x0, y0, x1, y1), pixels = mask_region_pixels(region)
    height, width = target.shape
    cx1, cy1 = min(x1, width), min(y1, height)
    if cx1 > x0 and cy1 > y0:
        target[y0:cy1, x0:cx1] |= pixels[: cy1 - y0, : cx1 - x0]


def mask_region_from_mask(mask: np.ndarray, *, defect_type: str) -> dict[str, Any] | None:
    """A brush region of the painted pixels of a bool (H, W) image mask (None when empty)."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    crop = mask[y0:y1, x0:x1]
    return {
        "shape": "mask",
        "box": [x0, y0, x1, y1],
        "mask": {"size": [y1 - y0, x1 - x0], "counts": counts_to_string(mask_rle(crop)["counts"])},
        "defect_type": defect_type,
    }


def mask_region_normalize(
    region: dict[str, Any], *, width: int | None, height: int | None, defect_type: str
) -> dict[str, Any]:
    """A brush region checked (box inside the image, mask the box's size, bounded) and in
    canonical form (compressed counts, box shrunk to the painted pixels), or an
    ApplicationError (400) saying what is wrong."""
    box, mask = region.get("box"), region.get("mask")
    if not isinstance(box, list | tuple) or len(box) != 4:
        raise _invalid("A mask region's box is [x0, y0, x1, y1].")
    x0, y0, x1, y1 = (
        _whole(v, name) for v, name in zip(box, ("x0", "y0", "x1", "y1"), strict=True)
    )
    if x0 < 0 or y0 < 0 or x1 <= x0 or y1 <= y0:
        raise _invalid(f"A mask region's box {list(box)} is empty or starts outside the image.")
    if (width is not None and x1 > width) or (height is not None and y1 > height):
        raise _invalid(
            f"A mask region's box {list(box)} reaches outside the image ({width} x {height})."
        )
    if (x1 - x0) * (y1 - y0) > MAX_MASK_PIXELS:
        raise _invalid(f"A mask region may cover at most {MAX_MASK_PIXELS} pixels.")
    if not isinstance(mask, dict) or not isinstance(mask.get("size"), list | tuple):
        raise _invalid('A mask region needs "mask": {"size": [h, w], "counts": ...}.')
    size = mask["size"]
    if len(size) != 2 or [_whole(v, "size") for v in size] != [y1 - y0, x1 - x0]:
        raise _invalid(
            f"A mask's size {list(size)} must be its box's [height, width], [{y1 - y0}, {x1 - x0}]."
        )
    counts = _checked_counts(mask.get("counts"), (x1 - x0) * (y1 - y0))
    pixels = rle_mask({"size": [y1 - y0, x1 - x0], "counts": counts})
    painted = mask_region_from_mask(pixels, defect_type=defect_type)
    if painted is None:
        raise _invalid("A mask region must paint at least one pixel.")
    px0, py0, px1, py1 = painted["box"]
    painted["box"] = [x0 + px0, y0 + py0, x0 + px1, y0 + py1]
    return painted
