"""Calibration on the validation split: pass/fail thresholds, the region threshold, metrics."""

from __future__ import annotations

import numpy as np

from vision.inference import upsample_cells
from vision.metrics import auroc, average_precision, threshold_for_recall


def validation_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Log loss of the image scores, and AUROC and average precision when both labels occur."""
    eps = 1e-6
    clipped = np.clip(scores, eps, 1 - eps)
    loss = float(-np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped)))
    metrics = {"val_loss": loss}
    if 0 < labels.sum() < len(labels):
        metrics["val_auroc"] = auroc(labels, scores)
        metrics["val_average_precision"] = average_precision(labels, scores)
    return metrics


def calibrate_thresholds(
    labels: np.ndarray, scores: np.ndarray, *, target_recall: float, target_precision: float
) -> dict[str, float]:
    """Pass below `pass`, fail at or above `fail`, a human in between.

    `pass` keeps at least target_recall of the validation defects at or above it, moved
    halfway down to the nearest ok score for a margin. `fail` is the lowest score where
    precision reaches target_precision, never below `pass`.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=float)
    if not (0 < labels.sum() < len(labels)):
        return {"pass": 0.5, "fail": 0.5, "target_recall": target_recall}
    recall_threshold = threshold_for_recall(labels, scores, target_recall)
    ok_below = scores[(labels == 0) & (scores < recall_threshold)]
    pass_threshold = (
        (recall_threshold + ok_below.max()) / 2 if ok_below.size else recall_threshold / 2
    )
    fail_threshold = 1.0
    for threshold in np.unique(scores):
        predicted = scores >= threshold
        precision = labels[predicted].mean()
        if precision >= target_precision:
            fail_threshold = float(threshold)
            break
    fail_threshold = max(fail_threshold, pass_threshold)
    return {
        "pass": float(pass_threshold),
        "fail": float(fail_threshold),
        "target_recall": target_recall,
        "target_precision": target_precision,
    }


REGION_THRESHOLD_RANGE = (0.25, 0.5)
# Share of clean validation images allowed to show a region at the calibrated level.
CLEAN_IMAGES_WITH_REGIONS = 0.02


def region_threshold_for(clean_peaks: np.ndarray, configured: float | None = None) -> float:
    """The heatmap level that makes a region, from the hottest cell of each clean validation
    image: the lowest level that at most CLEAN_IMAGES_WITH_REGIONS of them reach.

    Regions are where an inspector looks, so a faint second scratch beside an obvious one should
    be outlined, while clean phones should show nothing. Kept within REGION_THRESHOLD_RANGE: a
    model that fires on clean surface does not paint every speck (at most 0.5), and a tiny or
    unlucky validation split does not outline sensor noise (at least 0.25).
    """
    if configured is not None:
        return float(configured)
    low, high = REGION_THRESHOLD_RANGE
    clean_peaks = np.asarray(clean_peaks, dtype=float)
    if not clean_peaks.size:
        return high
    level = float(np.quantile(clean_peaks, 1.0 - CLEAN_IMAGES_WITH_REGIONS, method="higher"))
    return float(min(high, max(low, np.nextafter(level, 1.0))))


OUTLINE_LEVELS = np.round(np.arange(0.1, 0.91, 0.05), 2)


def outline_threshold_for(
    outlines: list[np.ndarray], masks: list[np.ndarray], stride: int
) -> tuple[float, float] | None:
    """(level, pixel IoU there): the outline level with the best pixel IoU over the validation
    images whose pixels are all known (clean ones count: an outline there is all false), or
    None when none of them shows a defect."""
    if not any(mask.any() for mask in masks):
        return None
    intersection = np.zeros(len(OUTLINE_LEVELS))
    predicted = np.zeros(len(OUTLINE_LEVELS))
    true_total = 0
    for cells, mask in zip(outlines, masks, strict=True):
        share = upsample_cells(cells, mask.shape, stride)
        true_total += int(mask.sum())
        for index, level in enumerate(OUTLINE_LEVELS):
            inside = share >= level
            predicted[index] += inside.sum()
            intersection[index] += (inside & mask).sum()
    iou = intersection / np.maximum(1, predicted + true_total - intersection)
    best = int(np.argmax(iou))
    return float(OUTLINE_LEVELS[best]), float(iou[best])
