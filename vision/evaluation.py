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
    """The predicted defect pixels: inside the outline (models with an outline head), else the
    heatmap cells at the region threshold."""
    outline = prediction.outline_mask()
    if outline is not None:
        return outline
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
    tally = _Tally()
    rows = []
    if overlays_dir is not None:
        Path(overlays_dir).mkdir(parents=True, exist_ok=True)
    for index, item in enumerate(items):
        rows.append(_evaluate_item(predictor, item, index, tally, overlays_dir))
        if progress:
            progress(index + 1, len(items))
    metrics = {**_image_metrics(predictor, tally), **_pixel_and_region_metrics(tally)}
    return EvaluationReport(metrics=metrics, items=rows)


@dataclass
class _Tally:
    """What evaluate() collects item by item, for the metrics at the end."""

    labels: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    predict_ms: list[float] = field(default_factory=list)
    flagged_by_type: dict[str, list[int]] = field(default_factory=dict)
    predicted_masks: list[np.ndarray] = field(default_factory=list)
    true_masks: list[np.ndarray] = field(default_factory=list)
    defects_hit: list[tuple[int, int]] = field(default_factory=list)
    clean_with_regions: list[bool] = field(default_factory=list)
    regions_off_defect: list[bool] = field(default_factory=list)


def _evaluate_item(
    predictor: Predictor,
    item: Item,
    index: int,
    tally: _Tally,
    overlays_dir: str | Path | None,
) -> dict[str, Any]:
    """Predict one item, add it to the tally, write its overlay; its row of the report."""
    image = item.load_image()
    started = time.perf_counter()
    [prediction] = predictor.predict([image])
    tally.predict_ms.append((time.perf_counter() - started) * 1000)
    label = 1 if item.label == "defect" else 0
    tally.labels.append(label)
    tally.scores.append(prediction.score)
    flagged = prediction.verdict != "pass"
    row = {
        "item": _item_name(item, index),
        "label": item.label,
        "defect_type": item.defect_type,
        **prediction.to_dict(),
    }
    if not label:
        tally.clean_with_regions.append(bool(prediction.regions))
    if label:
        tally.flagged_by_type.setdefault(item.defect_type or "defect", []).append(int(flagged))
    mask = item.load_mask() if (item.mask is not None or item.mask_path) else None
    if mask is not None:
        tally.predicted_masks.append(_pixel_prediction(prediction, predictor.region_threshold))
        tally.true_masks.append(mask)
        if mask.any():
            hits, defects = _defects_hit(item, mask, prediction)
            tally.defects_hit.append((hits, defects))
            row["regions_hit"] = f"{hits}/{defects}"
            tally.regions_off_defect.extend(
                not mask[y0:y1, x0:x1].any()
                for x0, y0, x1, y1 in (region.box for region in prediction.regions)
            )
    if overlays_dir is not None:
        name = f"{index:04d}_{item.label}_{prediction.verdict}_{prediction.score:.2f}.png"
        (Path(overlays_dir) / name).write_bytes(_overlay_with_boxes(image, prediction))
        row["overlay"] = name
    return row


def _image_metrics(predictor: Predictor, tally: _Tally) -> dict[str, Any]:
    """Counts, ranking, and what the pass and fail thresholds decide."""
    labels, scores = np.array(tally.labels), np.array(tally.scores)
    metrics: dict[str, Any] = {
        "n_images": len(labels),
        "n_defect": int(labels.sum()),
        "n_ok": int(len(labels) - labels.sum()),
        "pass_threshold": predictor.pass_threshold,
        "fail_threshold": predictor.fail_threshold,
        "ms_per_image": float(np.mean(tally.predict_ms)) if tally.predict_ms else None,
    }
    if 0 < labels.sum() < len(labels):
        metrics["auroc"] = auroc(labels, scores)
        metrics["average_precision"] = average_precision(labels, scores)
    else:
        metrics["auroc"] = None
        metrics["average_precision"] = None
    at_fail = precision_recall_f1(labels, scores, predictor.fail_threshold)
    metrics.update({k: at_fail[k] for k in ("precision", "recall", "f1")})
    predicted = (scores >= predictor.fail_threshold).astype(int)
    metrics["confusion_matrix"] = confusion_matrix(labels, predicted)
    flagged_all = scores >= predictor.pass_threshold
    metrics["flagged_recall"] = float(flagged_all[labels == 1].mean()) if labels.sum() else None
    metrics["false_pass"] = int(((labels == 1) & ~flagged_all).sum())
    metrics["automated_share"] = float(
        np.mean((scores < predictor.pass_threshold) | (scores >= predictor.fail_threshold))
    )
    metrics["flagged_by_defect_type"] = {
        name: {"flagged": int(sum(hits)), "total": len(hits)}
        for name, hits in tally.flagged_by_type.items()
    }
    return metrics


def _pixel_and_region_metrics(tally: _Tally) -> dict[str, Any]:
    """Pixel IoU on the masked items, and how regions fall on clean images and defects."""
    metrics: dict[str, Any] = {}
    if tally.true_masks:
        metrics["pixel_iou"] = pixel_iou(tally.predicted_masks, tally.true_masks)
    # What a lower region threshold costs: regions on clean images and beside the defects.
    metrics["clean_images_with_regions"] = (
        float(np.mean(tally.clean_with_regions)) if tally.clean_with_regions else None
    )
    metrics["regions_off_defect"] = (
        float(np.mean(tally.regions_off_defect)) if tally.regions_off_defect else None
    )
    if tally.defects_hit:
        # Summed over the dataset: every true defect counts once, however many share an image.
        hits, defects = np.sum(tally.defects_hit, axis=0)
        metrics["region_recall"] = float(hits / defects) if defects else None
    return metrics


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
