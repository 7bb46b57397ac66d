"""Image-level and pixel-level metrics, and the connected components that turn masks into regions.

Labels are 1/True for a defective phone (the positive class) and 0/False for a good one; a score
is higher when the model is surer of a defect; a prediction is positive when score >= threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Box = tuple[int, int, int, int]


def auroc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve: the chance that a random defective phone scores higher than a
    random good one, ties counting one half (the Mann-Whitney U statistic)."""
    positive, score = _labels_and_scores(labels, scores)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"AUROC needs both classes; got {n_pos} defective and {n_neg} good examples"
        )
    ranks = _average_ranks(score)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def average_precision(
    labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray
) -> float:
    """Area under the precision-recall curve as a step sum: sum over thresholds of
    (recall gained) x (precision there). Tied scores form one threshold."""
    positive, score = _labels_and_scores(labels, scores)
    n_pos = int(positive.sum())
    if n_pos == 0:
        raise ValueError("average precision needs at least one defective example")
    order = np.argsort(-score, kind="mergesort")
    score, positive = score[order], positive[order]
    tp = np.cumsum(positive)
    # Only the last position of a run of tied scores is a real threshold.
    last_of_tie = np.r_[score[1:] != score[:-1], True]
    tp = tp[last_of_tie]
    predicted = np.flatnonzero(last_of_tie) + 1
    precision = tp / predicted
    recall_gain = np.diff(np.r_[0, tp]) / n_pos
    return float(np.sum(recall_gain * precision))


def confusion_matrix(
    labels: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray
) -> dict[str, int]:
    """Counts of true/false positives/negatives: {"tp", "fp", "tn", "fn"}."""
    truth = _as_bool(labels, "labels")
    guess = _as_bool(predicted, "predicted")
    if truth.shape != guess.shape:
        raise ValueError(f"{truth.size} labels but {guess.size} predictions")
    return {
        "tp": int(np.sum(truth & guess)),
        "fp": int(np.sum(~truth & guess)),
        "tn": int(np.sum(~truth & ~guess)),
        "fn": int(np.sum(truth & ~guess)),
    }


def precision_recall_f1(
    labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray, threshold: float
) -> dict[str, float]:
    """Precision, recall and F1 of `score >= threshold`, with the confusion counts.

    A ratio whose denominator is zero (no predicted or no actual defects) is 0.0.
    """
    positive, score = _labels_and_scores(labels, scores)
    counts = confusion_matrix(positive, score >= threshold)
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, **counts}


def threshold_for_recall(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    target_recall: float,
) -> float:
    """The largest threshold whose predictions (score >= threshold) reach `target_recall`:
    the strictest setting that still catches that share of the defective phones."""
    if not 0.0 < target_recall <= 1.0:
        raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")
    positive, score = _labels_and_scores(labels, scores)
    positive_scores = np.sort(score[positive])[::-1]
    if positive_scores.size == 0:
        raise ValueError("a recall target needs at least one defective example")
    # The small slack keeps 0.9 * 10 from rounding up to 10 positives.
    needed = max(1, math.ceil(target_recall * positive_scores.size - 1e-9))
    return float(positive_scores[needed - 1])


def pixel_iou(
    pred_mask: np.ndarray | Sequence[np.ndarray], true_mask: np.ndarray | Sequence[np.ndarray]
) -> float:
    """Intersection over union of defect pixels. Given lists (a batch), intersections and unions
    are summed over all images before dividing. Both empty counts as a perfect 1.0."""
    intersection, pred_total, true_total = _pixel_counts(pred_mask, true_mask)
    union = pred_total + true_total - intersection
    return 1.0 if union == 0 else intersection / union


def pixel_dice(
    pred_mask: np.ndarray | Sequence[np.ndarray], true_mask: np.ndarray | Sequence[np.ndarray]
) -> float:
    """Dice coefficient 2|P and T| / (|P| + |T|) of defect pixels, summed over a batch like
    pixel_iou. Both empty counts as 1.0."""
    intersection, pred_total, true_total = _pixel_counts(pred_mask, true_mask)
    total = pred_total + true_total
    return 1.0 if total == 0 else 2.0 * intersection / total


def region_hits(
    true: np.ndarray | Sequence[Box],
    predicted_boxes: Sequence[Box],
    *,
    min_overlap: float = 0.0,
) -> tuple[int, int]:
    """(defects hit, defects) for one image; sum these over a dataset for its region recall.

    The defects are the 8-connected components of a true bool mask, or the given true boxes.
    A defect is hit when the predicted boxes together cover at least max(1 pixel,
    min_overlap x its pixels): with the default 0, touching any one of its pixels is enough.
    For true boxes, a box's pixels are its area.
    """
    if not 0.0 <= min_overlap <= 1.0:
        raise ValueError(f"min_overlap must be in [0, 1], got {min_overlap}")
    if isinstance(true, np.ndarray) and true.ndim == 2:
        components, count = connected_components(true)
        if count == 0:
            return 0, 0
        covered = _rasterise(predicted_boxes, true.shape)
        sizes = np.bincount(components.ravel(), minlength=count + 1)[1:]
        hit_pixels = np.bincount(components[covered], minlength=count + 1)[1:]
    else:
        true_boxes = [_check_box(box) for box in true]
        if not true_boxes:
            return 0, 0
        all_boxes = true_boxes + [_check_box(box) for box in predicted_boxes]
        canvas = (max(b[3] for b in all_boxes), max(b[2] for b in all_boxes))
        covered = _rasterise(predicted_boxes, canvas)
        sizes = np.array([(x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in true_boxes])
        hit_pixels = np.array([covered[y0:y1, x0:x1].sum() for x0, y0, x1, y1 in true_boxes])
    needed = np.maximum(1, np.ceil(min_overlap * sizes - 1e-9))
    return int(np.sum((hit_pixels >= needed) & (sizes > 0))), int(np.sum(sizes > 0))


def region_recall(
    true: np.ndarray | Sequence[Box],
    predicted_boxes: Sequence[Box],
    *,
    min_overlap: float = 0.0,
) -> float:
    """Share of one image's true defects hit by the predicted boxes (see region_hits for the
    rule). An image without defects has nothing to miss: 1.0, as with pixel_iou."""
    hits, defects = region_hits(true, predicted_boxes, min_overlap=min_overlap)
    return 1.0 if defects == 0 else hits / defects


def connected_components(mask: np.ndarray, *, connectivity: int = 8) -> tuple[np.ndarray, int]:
    """Label the connected True regions of a bool (H, W) mask.

    Returns (labels, n): int32 labels 1..n numbered in raster order of each region's first
    pixel, 0 for background.
    """
    mask = _as_mask(mask)
    rows, starts, ends, run_labels, count = _labelled_runs(mask, connectivity)
    labels = np.zeros(mask.shape, np.int32)
    if count:
        # The True pixels in raster order are exactly the runs in order, so one repeat paints them.
        labels.ravel()[np.flatnonzero(mask)] = np.repeat(run_labels, ends - starts)
    return labels, count


def component_boxes(mask: np.ndarray, *, connectivity: int = 8) -> list[Box]:
    """Bounding box (x0, y0, x1, y1), ends exclusive, of each connected region, in the order of
    connected_components' labels."""
    mask = _as_mask(mask)
    rows, starts, ends, run_labels, count = _labelled_runs(mask, connectivity)
    if count == 0:
        return []
    index = run_labels - 1
    x0, y0 = np.full(count, mask.shape[1]), np.full(count, mask.shape[0])
    x1, y1 = np.zeros(count, np.int64), np.zeros(count, np.int64)
    np.minimum.at(x0, index, starts)
    np.minimum.at(y0, index, rows)
    np.maximum.at(x1, index, ends)
    np.maximum.at(y1, index, rows + 1)
    return [(int(a), int(b), int(c), int(d)) for a, b, c, d in zip(x0, y0, x1, y1, strict=True)]


def _labelled_runs(
    mask: np.ndarray, connectivity: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Horizontal runs of True pixels and the component label (1..n) of each.

    Working on runs instead of pixels keeps the union-find small: a thin scratch of a thousand
    pixels is a few dozen runs, and every step is a vectorised numpy call.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    height, width = mask.shape
    padded = np.zeros((height, width + 2), np.int8)
    padded[:, 1:-1] = mask
    steps = np.diff(padded, axis=1)
    rows, starts = np.nonzero(steps == 1)
    _, ends = np.nonzero(steps == -1)  # exclusive; same raster order as the starts
    n_runs = rows.size
    if n_runs == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, empty, 0

    a, b = _touching_runs(rows, starts, ends, width, connectivity)
    run_labels = _component_labels(n_runs, a, b)
    return rows, starts, ends, run_labels, int(run_labels.max())


def _touching_runs(
    rows: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int, connectivity: int
) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (a, b) of runs in consecutive rows that touch.

    Runs a (row y) and b (row y + 1) touch when their column ranges overlap, or, with
    8-connectivity, also meet at a corner. Runs in one row are sorted and disjoint, so the
    runs b that touch a form one contiguous index range [first, last), found by searchsorted
    on keys that put each row in its own band of width + 2.
    """
    stride = width + 2
    reach = 0 if connectivity == 8 else 1
    start_keys = rows * stride + starts
    end_keys = rows * stride + ends
    below = (rows + 1) * stride
    first = np.searchsorted(end_keys, below + starts + reach, side="left")
    last = np.searchsorted(start_keys, below + ends - reach, side="right")
    counts = np.maximum(last - first, 0)
    a = np.repeat(np.arange(rows.size), counts)
    b = np.repeat(first, counts) + (
        np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    )
    return a, b


def _component_labels(n_runs: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Label 1..n of each run's component, given the touching pairs (a, b).

    Union-find by hooking the larger root onto the smaller, then pointer jumping; parent[i]
    never exceeds i, so there are no cycles, and a few rounds settle even long snakes.
    """
    parent = np.arange(n_runs)
    while a.size:
        root_a, root_b = parent[a], parent[b]
        differ = root_a != root_b
        if not differ.any():
            break
        root_a, root_b = root_a[differ], root_b[differ]
        np.minimum.at(parent, np.maximum(root_a, root_b), np.minimum(root_a, root_b))
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
        a, b = a[differ], b[differ]
    _, run_labels = np.unique(parent, return_inverse=True)
    return run_labels.astype(np.int32) + 1


def _rasterise(boxes: Sequence[Box], shape: tuple[int, int]) -> np.ndarray:
    covered = np.zeros(shape, bool)
    for box in boxes:
        x0, y0, x1, y1 = _check_box(box)
        covered[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
    return covered


def _check_box(box: Sequence[float]) -> Box:
    if len(box) != 4:
        raise ValueError(f"a box is (x0, y0, x1, y1), got {box!r}")
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    return x0, y0, x1, y1


def _pixel_counts(
    pred: np.ndarray | Sequence[np.ndarray], true: np.ndarray | Sequence[np.ndarray]
) -> tuple[int, int, int]:
    preds = [pred] if isinstance(pred, np.ndarray) else list(pred)
    trues = [true] if isinstance(true, np.ndarray) else list(true)
    if len(preds) != len(trues):
        raise ValueError(f"{len(preds)} predicted masks but {len(trues)} true masks")
    intersection = pred_total = true_total = 0
    for p, t in zip(preds, trues, strict=True):
        p, t = np.asarray(p, bool), np.asarray(t, bool)
        if p.shape != t.shape:
            raise ValueError(f"mask shapes differ: predicted {p.shape}, true {t.shape}")
        intersection += int(np.count_nonzero(p & t))
        pred_total += int(np.count_nonzero(p))
        true_total += int(np.count_nonzero(t))
    return intersection, pred_total, true_total


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Tied values share the mean of the 1-based ranks they span.
    boundaries = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1], True])
    first, after = boundaries[:-1], boundaries[1:]
    mean_rank = (first + after + 1) / 2.0
    ranks = np.empty(values.size)
    ranks[order] = np.repeat(mean_rank, after - first)
    return ranks


def _labels_and_scores(
    labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    positive = _as_bool(labels, "labels")
    score = np.asarray(scores, dtype=np.float64).ravel()
    if positive.size != score.size:
        raise ValueError(f"{positive.size} labels but {score.size} scores")
    if positive.size == 0:
        raise ValueError("no examples to score")
    if not np.all(np.isfinite(score)):
        raise ValueError("scores must be finite numbers (found NaN or infinity)")
    return positive, score


def _as_bool(values: Sequence[int] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values).ravel()
    if array.dtype != bool:
        if array.size and not np.isin(array, (0, 1)).all():
            raise ValueError(f"{name} must be 0/1 or booleans (1 = defective)")
        array = array.astype(bool)
    return array


def _as_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    return mask.astype(bool, copy=False)
