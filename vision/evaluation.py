"""Evaluation of a predictor on labelled items: image metrics, pixel metrics, per-item results."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from vision.datasets import Item
from vision.inference import ImagePrediction, Predictor
from vision.metrics import (
    auroc,
    average_precision,
    confusion_matrix,
    pixel_iou,
    precision_recall_f1,
    region_hits,
)


@dataclass
class EvaluationReport:
    metrics: dict[str, Any]
    items: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, *, with_items: bool = False) -> dict[str, Any]:
        data = dict(self.metrics)
        if with_items:
            data["items"] = self.items
        return data


def _pixel_prediction(prediction: ImagePrediction, threshold: float) -> np.ndarray:
    width, height = prediction.image_size
    heat = Image.fromarray((prediction.heatmap * 255).astype(np.uint8)).resize(
        (width, height), Image.Resampling.NEAREST
    )
    return np.asarray(heat) >= threshold * 255


def _item_name(item: Item, index: int) -> str:
    return str(item.path) if item.path else (item.group or f"item-{index}")


def evaluate(
    predictor: Predictor,
    items: Sequence[Item],
    *,
    overlays_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvaluationReport:
    """Predict every item and measure. Pixel metrics use the items that have masks."""
    labels, scores, rows = [], [], []
    ious_pred, ious_true, defects_hit = [], [], []
    clean_with_regions, regions_off_defect = [], []
    predict_ms = []
    per_type: dict[str, list[int]] = {}
    if overlays_dir is not None:
        Path(overlays_dir).mkdir(parents=True, exist_ok=True)
    for index, item in enumerate(items):
        image = item.load_image()
        started = time.perf_counter()
        [prediction] = predictor.predict([image])
        predict_ms.append((time.perf_counter() - started) * 1000)
        label = 1 if item.label == "defect" else 0
        labels.append(label)
        scores.append(prediction.score)
        flagged = prediction.verdict != "pass"
        row = {
            "item": _item_name(item, index),
            "label": item.label,
            "defect_type": item.defect_type,
            **prediction.to_dict(),
        }
        if not label:
            clean_with_regions.append(bool(prediction.regions))
        if label:
            per_type.setdefault(item.defect_type or "defect", []).append(int(flagged))
        mask = item.load_mask() if (item.mask is not None or item.mask_path) else None
        if mask is not None:
            ious_pred.append(_pixel_prediction(prediction, predictor.region_threshold))
            ious_true.append(mask)
            if mask.any():
                hits, defects = _defects_hit(item, mask, prediction)
                defects_hit.append((hits, defects))
                row["regions_hit"] = f"{hits}/{defects}"
                regions_off_defect.extend(
                    not mask[y0:y1, x0:x1].any()
                    for x0, y0, x1, y1 in (region.box for region in prediction.regions)
                )
        if overlays_dir is not None:
            name = f"{index:04d}_{item.label}_{prediction.verdict}_{prediction.score:.2f}.png"
            (Path(overlays_dir) / name).write_bytes(_overlay_with_boxes(image, prediction))
            row["overlay"] = name
        rows.append(row)
        if progress:
            progress(index + 1, len(items))
    labels_array, scores_array = np.array(labels), np.array(scores)
    metrics: dict[str, Any] = {
        "n_images": len(items),
        "n_defect": int(labels_array.sum()),
        "n_ok": int(len(labels) - labels_array.sum()),
        "pass_threshold": predictor.pass_threshold,
        "fail_threshold": predictor.fail_threshold,
        "ms_per_image": float(np.mean(predict_ms)) if predict_ms else None,
    }
    if 0 < labels_array.sum() < len(labels_array):
        metrics["auroc"] = auroc(labels_array, scores_array)
        metrics["average_precision"] = average_precision(labels_array, scores_array)
    else:
        metrics["auroc"] = None
        metrics["average_precision"] = None
    at_fail = precision_recall_f1(labels_array, scores_array, predictor.fail_threshold)
    metrics.update({k: at_fail[k] for k in ("precision", "recall", "f1")})
    predicted = (scores_array >= predictor.fail_threshold).astype(int)
    metrics["confusion_matrix"] = confusion_matrix(labels_array, predicted)
    flagged_all = scores_array >= predictor.pass_threshold
    metrics["flagged_recall"] = (
        float(flagged_all[labels_array == 1].mean()) if labels_array.sum() else None
    )
    metrics["false_pass"] = int(((labels_array == 1) & ~flagged_all).sum())
    metrics["automated_share"] = float(
        np.mean(
            (scores_array < predictor.pass_threshold) | (scores_array >= predictor.fail_threshold)
        )
    )
    metrics["flagged_by_defect_type"] = {
        name: {"flagged": int(sum(hits)), "total": len(hits)} for name, hits in per_type.items()
    }
    if ious_true:
        metrics["pixel_iou"] = pixel_iou(ious_pred, ious_true)
    # What a lower region threshold costs: regions on clean images and beside the defects.
    metrics["clean_images_with_regions"] = (
        float(np.mean(clean_with_regions)) if clean_with_regions else None
    )
    metrics["regions_off_defect"] = (
        float(np.mean(regions_off_defect)) if regions_off_defect else None
    )
    if defects_hit:
        # Summed over the dataset: every true defect counts once, however many share an image.
        hits, defects = np.sum(defects_hit, axis=0)
        metrics["region_recall"] = float(hits / defects) if defects else None
    return EvaluationReport(metrics=metrics, items=rows)


def _defects_hit(item: Item, mask: np.ndarray, prediction: ImagePrediction) -> tuple[int, int]:
    """(defects hit, defects). With per-defect boxes (synthetic metadata, labellers' boxes) a
    defect is the mask inside its box, so a faint scratch whose mask breaks into pieces still
    counts once; without boxes the mask's connected components are the defects."""
    boxes = [region.box for region in prediction.regions]
    if not item.boxes:
        return region_hits(mask, boxes)
    covered = np.zeros(mask.shape, dtype=bool)
    for x0, y0, x1, y1 in boxes:
        covered[y0:y1, x0:x1] = True
    hits = 0
    for x0, y0, x1, y1 in item.boxes:
        pixels = mask[y0:y1, x0:x1]
        inside = covered[y0:y1, x0:x1]
        hits += bool((inside & pixels).any() if pixels.any() else inside.any())
    return hits, len(item.boxes)


def _overlay_with_boxes(image: np.ndarray, prediction: ImagePrediction) -> bytes:
    """Heatmap overlay plus each region's box, for people to look at."""
    overlay = Image.open(io.BytesIO(prediction.heatmap_png(image))).convert("RGB")
    draw = ImageDraw.Draw(overlay)
    for region in prediction.regions:
        draw.rectangle(region.box, outline=(0, 255, 120), width=2)
        draw.text(
            (region.box[0], max(0, region.box[1] - 12)), f"{region.score:.2f}", fill=(0, 255, 120)
        )
    draw.text((8, 8), f"{prediction.verdict} {prediction.score:.3f}", fill=(255, 255, 0))
    buffer = io.BytesIO()
    overlay.save(buffer, format="PNG")
    return buffer.getvalue()
