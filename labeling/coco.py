"""COCO JSON for boxes and polygons: built from dataset items, read back into regions.

The image-level label travels in each image's `label` field (COCO has none); defect types
are the categories. A polygon is a `segmentation` ring; a box has none.
"""

from __future__ import annotations

from typing import Any

from labeling.regions import DEFECT_TYPES, region_normalize


def coco_document(images: list[dict[str, Any]], *, description: str = "") -> dict[str, Any]:
    """images: [{"file_name", "width", "height", "label", "regions", ...extra}] -> COCO dict."""
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(DEFECT_TYPES)]
    category_id = {c["name"]: c["id"] for c in categories}
    coco_images, annotations = [], []
    for image_id, image in enumerate(images, start=1):
        extra = {k: v for k, v in image.items() if k not in ("regions",)}
        coco_images.append({"id": image_id, **extra})
        for region in image.get("regions") or ():
            x0, y0, x1, y1 = region["box"]
            annotation = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": category_id.get(region.get("defect_type"), category_id["other"]),
                "bbox": [x0, y0, round(x1 - x0, 1), round(y1 - y0, 1)],
                "area": round((x1 - x0) * (y1 - y0), 1),
                "iscrowd": 0,
            }
            if region.get("shape") == "polygon":
                annotation["segmentation"] = [[c for point in region["points"] for c in point]]
            annotations.append(annotation)
    return {
        "info": {"description": description, "version": "1.0"},
        "images": coco_images,
        "annotations": annotations,
        "categories": categories,
    }


def coco_read(document: Any) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """{file_name: {"label", "regions", "width", "height"}} and one message per bad entry.

    An image with regions but no `label` is a defect; one with neither is ok.
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
        }
    bad_images: set[str] = set()
    for annotation in document.get("annotations") or []:
        name = by_id.get(annotation.get("image_id"))
        if name is None:
            errors.append(f"annotation {annotation.get('id')}: unknown image_id")
            continue
        defect_type = names.get(annotation.get("category_id"), "other")
        try:
            segmentation = annotation.get("segmentation")
            if isinstance(segmentation, list) and segmentation and segmentation[0]:
                ring = segmentation[0]
                points = [[ring[i], ring[i + 1]] for i in range(0, len(ring) - 1, 2)]
                region = {"shape": "polygon", "points": points, "defect_type": defect_type}
            else:
                x, y, w, h = annotation["bbox"]
                region = {"shape": "box", "box": [x, y, x + w, y + h], "defect_type": defect_type}
            images[name]["regions"].append(region_normalize(region))
        except Exception as exc:  # one bad annotation spoils only its image
            errors.append(f"{name}: annotation {annotation.get('id')} unreadable ({exc})")
            bad_images.add(name)
    for name in bad_images:
        images.pop(name, None)
    for name, image in images.items():
        label = image["label"] or ("defect" if image["regions"] else "ok")
        if label not in ("ok", "defect"):
            errors.append(f"{name}: label {label!r} is not ok or defect")
            bad_images.add(name)
        image["label"] = label
    return {n: i for n, i in images.items() if n not in bad_images}, errors
