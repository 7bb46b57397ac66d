"""COCO JSON for boxes, polygons and pixel masks: built from dataset items, read back.

The image-level label travels in each image's `label` field (COCO has none); defect types
are the categories (the taxonomy's types first, in its order, then any other type a dataset
holds, e.g. the magnetic tiles' `blowhole`). A polygon is a `segmentation` ring; a box is the ring
of its four corners (so every annotation rasterises with pycocotools' `annToMask`); a pixel
mask is one uncompressed RLE `segmentation` (`{"size": [h, w], "counts": [...]}`, column-major,
starting with a run of zeros) with `iscrowd: 1`, as the COCO format pairs RLE with crowds,
and its `area` and `bbox` computed from the mask's pixels. A brush region (`"shape": "mask"`,
labeling.masks) is its own annotation with the same RLE over the whole image but `iscrowd: 0`
(one defect that evaluation must count), and reads back as a brush region.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from labeling.masks import mask_region_from_mask, mask_region_paste, mask_rle, rle_mask
from labeling.regions import DEFAULT_DEFECT_TYPE, region_normalize


def mask_bbox(mask: np.ndarray) -> list[float]:
    """[x, y, w, h] around the mask's pixels (as pycocotools' toBbox), zeros when empty."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return [0.0, 0.0, 0.0, 0.0]
    x0, y0 = int(xs.min()), int(ys.min())
    return [float(x0), float(y0), float(xs.max() - x0 + 1), float(ys.max() - y0 + 1)]


def _polygon_area(points: list[list[float]]) -> float:
    xs = np.array([p[0] for p in points], dtype=float)
    ys = np.array([p[1] for p in points], dtype=float)
    return float(abs(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))) / 2)


def _categories(images: list[dict[str, Any]], taxonomy: Sequence[str]) -> list[dict[str, Any]]:
    names = list(dict.fromkeys(str(name) for name in taxonomy))
    found = {
        str(name)
        for image in images
        for name in [image.get("mask_defect_type")]
        + [r.get("defect_type") for r in image.get("regions") or ()]
        if name
    }
    names += sorted(found - set(names))
    if DEFAULT_DEFECT_TYPE not in names:  # what a region or mask without a type counts as
        names.append(DEFAULT_DEFECT_TYPE)
    return [{"id": i + 1, "name": name} for i, name in enumerate(names)]


def coco_document(
    images: list[dict[str, Any]], *, description: str = "", taxonomy: Sequence[str] = ()
) -> dict[str, Any]:
    """images: [{"file_name", "width", "height", "label", "regions", "mask" (a bool array or
    None), "mask_defect_type", ...extra}] -> COCO dict. `taxonomy`: the type names that are
    categories whether the images use them or not (the taxonomy's, in its order)."""
    categories = _categories(images, taxonomy)
    category_id = {c["name"]: c["id"] for c in categories}
    other = category_id[DEFAULT_DEFECT_TYPE]
    coco_images, annotations = [], []
    for image_id, image in enumerate(images, start=1):
        extra = {k: v for k, v in image.items() if k not in ("regions", "mask", "mask_defect_type")}
        coco_images.append({"id": image_id, **extra})
        for region in image.get("regions") or ():
            x0, y0, x1, y1 = region["box"]
            annotation = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": category_id.get(region.get("defect_type"), other),
                "bbox": [x0, y0, round(x1 - x0, 1), round(y1 - y0, 1)],
                "area": round((x1 - x0) * (y1 - y0), 1),
                "iscrowd": 0,
            }
            if region.get("shape") == "polygon":
                annotation["segmentation"] = [[c for point in region["points"] for c in point]]
                annotation["area"] = round(_polygon_area(region["points"]), 1)
            elif region.get("shape") == "mask":
                # A brush region: its pixels as RLE over the whole image; one defect, not a
                # crowd (iscrowd 0), so an evaluation counts it instead of ignoring it.
                pixels = np.zeros((int(image["height"]), int(image["width"])), dtype=bool)
                mask_region_paste(region, pixels)
                annotation["segmentation"] = mask_rle(pixels)
                annotation["bbox"] = mask_bbox(pixels)
                annotation["area"] = int(pixels.sum())
            else:
                annotation["segmentation"] = [[x0, y0, x1, y0, x1, y1, x0, y1]]
            annotations.append(annotation)
        mask = image.get("mask")
        if mask is not None and mask.any():
            defect_type = image.get("mask_defect_type") or DEFAULT_DEFECT_TYPE
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_id.get(defect_type, other),
                    "segmentation": mask_rle(mask),
                    "bbox": mask_bbox(mask),
                    "area": int(mask.sum()),
                    "iscrowd": 1,
                }
            )
    return {
        "info": {"description": description, "version": "1.0"},
        "images": coco_images,
        "annotations": annotations,
        "categories": categories,
    }


def _ring_region(ring: list[float], bbox: Any, defect_type: str) -> dict[str, Any]:
    points = [[ring[i], ring[i + 1]] for i in range(0, len(ring) - 1, 2)]
    if isinstance(bbox, list | tuple) and len(bbox) == 4 and len(points) == 4:
        x, y, w, h = (float(v) for v in bbox)
        corners = [[x, y], [x + w, y], [x + w, y + h], [x, y + h]]
        if all(
            abs(float(a) - b) < 0.05
            for p, q in zip(points, corners, strict=True)
            for a, b in zip(p, q, strict=True)
        ):
            return {"shape": "box", "box": [x, y, x + w, y + h], "defect_type": defect_type}
    return {"shape": "polygon", "points": points, "defect_type": defect_type}


def coco_read(document: Any) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """{file_name: {"label", "regions", "width", "height", "mask", "mask_defect_type"}} and one
    message per bad entry; `mask` is the union of the image's RLE annotations (or None).

    An image with regions or a mask but no `label` is a defect; one with neither is ok.
    """
    errors: list[str] = []
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        return {}, ["not a COCO document: no images list"]
    names = {c.get("id"): str(c.get("name", "other")) for c in document.get("categories") or []}
    images: dict[Any, dict[str, Any]] = {}
    by_id: dict[Any, str] = {}
    for image in document["images"]:
        name = image.get("file_name") if isinstance(image, dict) else None
        if not name or not isinstance(name, str):
            errors.append(f"image entry without a file_name string: {image!r}"[:200])
            continue
        by_id[image.get("id")] = name
        images[name] = {
            "label": image.get("label"),
            "regions": [],
            "width": image.get("width"),
            "height": image.get("height"),
            "mask": None,
            "mask_defect_type": "",
        }
    bad_images: set[str] = set()
    for annotation in document.get("annotations") or []:
        name = by_id.get(annotation.get("image_id"))
        if name is None:
            errors.append(f"annotation {annotation.get('id')}: unknown image_id")
            continue
        defect_type = names.get(annotation.get("category_id"), "other")
        entry = images[name]
        try:
            segmentation = annotation.get("segmentation")
            if isinstance(segmentation, dict) and annotation.get("iscrowd") == 0:
                # RLE of one defect (our brush regions): a mask region of its own.
                mask = rle_mask(segmentation)
                size = (entry["height"], entry["width"])
                if None not in size and mask.shape != tuple(int(v) for v in size):
                    raise ValueError(f"RLE size {list(mask.shape)} is not the image's")
                region = mask_region_from_mask(mask, defect_type=defect_type)
                if region is not None:
                    entry["regions"].append(region_normalize(region))
                continue
            if isinstance(segmentation, dict):
                mask = rle_mask(segmentation)
                entry["mask"] = mask if entry["mask"] is None else entry["mask"] | mask
                entry["mask_defect_type"] = entry["mask_defect_type"] or defect_type
                continue
            if isinstance(segmentation, list) and segmentation and segmentation[0]:
                regions = [
                    _ring_region(ring, annotation.get("bbox"), defect_type) for ring in segmentation
                ]
            else:
                x, y, w, h = annotation["bbox"]
                regions = [
                    {"shape": "box", "box": [x, y, x + w, y + h], "defect_type": defect_type}
                ]
            entry["regions"] += [region_normalize(region) for region in regions]
        except Exception as exc:  # one bad annotation spoils only its image
            errors.append(f"{name}: annotation {annotation.get('id')} unreadable ({exc})")
            bad_images.add(name)
    for name in bad_images:
        images.pop(name, None)
    for name, image in images.items():
        marked = image["regions"] or (image["mask"] is not None and image["mask"].any())
        label = image["label"] or ("defect" if marked else "ok")
        if label not in ("ok", "defect"):
            errors.append(f"{name}: label {label!r} is not ok or defect")
            bad_images.add(name)
        image["label"] = label
    return {n: i for n, i in images.items() if n not in bad_images}, errors
