"""Regions of an annotation (boxes and polygons): checking, normalising, comparing, rasterising.

Pure functions on the JSON form described in labeling.models; no database. Defect types are
names (strings): which ones a region may carry is the caller's to say (the line's taxonomy,
core.selectors), so these functions take the accepted names as an argument.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from core.errors import ApplicationError
from labeling.masks import mask_region_normalize, mask_region_paste

SHAPES = ("box", "polygon", "mask")  # a mask: a brush region, see labeling.masks
# The catch-all type: a region without a type is one of these (the default taxonomy's last).
DEFAULT_DEFECT_TYPE = "other"
DEFECT_TYPE_MAX_LENGTH = 32  # DatasetItem.defect_type and DefectType.name hold this many
MAX_REGIONS = 200
MAX_POINTS = 500


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApplicationError(f"{what} must be a number, got {value!r}.", code="invalid_region")
    return float(value)


def defect_type_clean(value: Any, *, accepted: Collection[str] | None = None) -> str:
    """A region's defect type as stored: lower case, `other` when missing.

    With `accepted` (the names a taxonomy allows, and those the data already holds) any other
    name is an ApplicationError; without it (imports) any name is kept, cut to 32 characters.
    """
    if value is None or value == "":
        name = DEFAULT_DEFECT_TYPE
    elif isinstance(value, str) or accepted is None:
        name = str(value).strip().lower()
    else:
        raise ApplicationError(
            f"defect_type must be a string, got {value!r}.", code="invalid_defect_type"
        )
    if accepted is None:  # an import: keep its names, as long as a column holds them
        return name[:DEFECT_TYPE_MAX_LENGTH] or DEFAULT_DEFECT_TYPE
    if not name or len(name) > DEFECT_TYPE_MAX_LENGTH:
        raise ApplicationError(
            f"defect_type must be 1 to {DEFECT_TYPE_MAX_LENGTH} characters.",
            code="invalid_defect_type",
        )
    if name not in accepted:
        known = ", ".join(sorted(accepted)) or "none"
        raise ApplicationError(
            f"Unknown defect type {name!r}; the taxonomy of this line has: {known}.",
            code="unknown_defect_type",
        )
    return name


def region_normalize(
    region: Any,
    *,
    width: int | None = None,
    height: int | None = None,
    defect_types: Collection[str] | None = None,
) -> dict:
    """One region in canonical form, or ApplicationError saying what is wrong with it.

    Accepts the inspector's form (`{"box": [...], "defect_type": ...}`) as a box. Coordinates
    are rounded to 0.1 px and clipped to the image when its size is known. `defect_types`:
    the accepted type names (see defect_type_clean).
    """
    if not isinstance(region, dict):
        raise ApplicationError("Each region must be an object.", code="invalid_region")
    shape = region.get("shape") or ("polygon" if region.get("points") else "box")
    if shape not in SHAPES:
        raise ApplicationError(
            f"shape must be box, polygon or mask, got {shape!r}.", code="invalid_region"
        )
    defect_type = defect_type_clean(region.get("defect_type"), accepted=defect_types)
    if shape == "mask":
        return mask_region_normalize(region, width=width, height=height, defect_type=defect_type)

    def clip(x: float, y: float) -> tuple[float, float]:
        if width is not None:
            x = min(max(x, 0.0), float(width))
        if height is not None:
            y = min(max(y, 0.0), float(height))
        return round(x, 1), round(y, 1)

    if shape == "polygon":
        points = region.get("points")
        if not isinstance(points, list) or not 3 <= len(points) <= MAX_POINTS:
            raise ApplicationError(
                f"A polygon needs 3 to {MAX_POINTS} points.", code="invalid_region"
            )
        clean = []
        for point in points:
            if not isinstance(point, list | tuple) or len(point) != 2:
                raise ApplicationError("A point is [x, y].", code="invalid_region")
            clean.append(list(clip(_number(point[0], "x"), _number(point[1], "y"))))
        xs, ys = [p[0] for p in clean], [p[1] for p in clean]
        if max(xs) - min(xs) <= 0 or max(ys) - min(ys) <= 0:
            raise ApplicationError("A polygon must enclose an area.", code="invalid_region")
        return {
            "shape": "polygon",
            "points": clean,
            "box": [min(xs), min(ys), max(xs), max(ys)],
            "defect_type": defect_type,
        }
    box = region.get("box")
    if not isinstance(box, list | tuple) or len(box) != 4:
        raise ApplicationError("A box is [x0, y0, x1, y1].", code="invalid_region")
    x0, y0 = clip(_number(box[0], "x0"), _number(box[1], "y0"))
    x1, y1 = clip(_number(box[2], "x1"), _number(box[3], "y1"))
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        raise ApplicationError("A box must have an area.", code="invalid_region")
    return {"shape": "box", "box": [x0, y0, x1, y1], "defect_type": defect_type}


def regions_normalize(
    regions: Any,
    *,
    width: int | None = None,
    height: int | None = None,
    defect_types: Collection[str] | None = None,
) -> list[dict]:
    if regions is None:
        return []
    if not isinstance(regions, list):
        raise ApplicationError("regions must be a list.", code="invalid_region")
    if len(regions) > MAX_REGIONS:
        raise ApplicationError(f"At most {MAX_REGIONS} regions.", code="invalid_region")
    return [
        region_normalize(r, width=width, height=height, defect_types=defect_types) for r in regions
    ]


def region_defect_types(*region_lists: Iterable[Any]) -> set[str]:
    """The defect type names these regions carry (what existing data keeps accepted)."""
    return {
        str(r["defect_type"]).lower()
        for regions in region_lists
        for r in regions or ()
        if isinstance(r, dict) and isinstance(r.get("defect_type"), str) and r["defect_type"]
    }


def pre_annotation_from_inspection(regions: Iterable[dict]) -> list[dict]:
    """The inspector's regions as a labeler's starting point; the ones marked rejected (a model
    region the inspector said was wrong) are left out, broken ones skipped."""
    result = []
    for region in regions or ():
        if isinstance(region, dict) and region.get("rejected"):
            continue
        try:
            result.append(region_normalize(region))
        except ApplicationError:
            continue
    return result


def region_integer_box(region: dict) -> tuple[int, int, int, int]:
    """The region's box as whole pixels, x1/y1 exclusive (what vision.datasets.Item holds)."""
    x0, y0, x1, y1 = region["box"]
    box = (int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1)))
    if box[2] <= box[0] or box[3] <= box[1]:
        box = (box[0], box[1], max(box[2], box[0] + 1), max(box[3], box[1] + 1))
    return box


def main_defect_type(regions: Sequence[dict]) -> str:
    """The most common defect type among the regions ('other' for a defect with none)."""
    counts = Counter(r.get("defect_type") or "other" for r in regions)
    if not counts:
        return "other"
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def regions_mask(regions: Sequence[dict], *, width: int, height: int) -> np.ndarray:
    """A bool (height, width) mask with every region filled in."""
    image = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(image)
    for region in regions:
        if region.get("shape") == "polygon":
            draw.polygon([tuple(p) for p in region["points"]], fill=255)
        elif region.get("shape") != "mask":
            x0, y0, x1, y1 = region_integer_box(region)
            draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=255)
    mask = np.asarray(image) > 0
    for region in regions:
        if region.get("shape") == "mask":
            mask_region_paste(region, mask)
    return mask


def mask_png(mask: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def regions_iou(first: Sequence[dict], second: Sequence[dict], *, width: int, height: int) -> float:
    """Pixel IoU of two labelers' regions (1.0 when both drew nothing)."""
    a = regions_mask(first, width=width, height=height)
    b = regions_mask(second, width=width, height=height)
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)
