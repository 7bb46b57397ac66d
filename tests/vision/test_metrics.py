import time

import numpy as np
import pytest

from vision.metrics import (
    auroc,
    average_precision,
    component_boxes,
    confusion_matrix,
    connected_components,
    pixel_dice,
    pixel_iou,
    precision_recall_f1,
    region_hits,
    region_recall,
    threshold_for_recall,
)


def test_auroc_known_example():
    # Of the 4 (defect, good) pairs, 3 rank the defect higher: 0.75.
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_auroc_ties_count_half():
    assert auroc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert auroc([0, 0, 1, 1], [0.2, 0.5, 0.5, 0.9]) == pytest.approx(0.875)


def test_auroc_perfect_and_reversed():
    assert auroc([False, False, True], [0.1, 0.2, 0.9]) == 1.0
    assert auroc([1, 1, 0], [0.1, 0.2, 0.9]) == 0.0


def test_auroc_needs_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        auroc([1, 1, 1], [0.1, 0.2, 0.3])


def test_auroc_refuses_bad_input():
    with pytest.raises(ValueError, match="labels"):
        auroc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="3 labels but 2 scores"):
        auroc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="finite"):
        auroc([0, 1], [0.1, float("nan")])


def test_average_precision_known_example():
    # Ranked: 0.8 (defect, P=1), 0.4 (good), 0.35 (defect, P=2/3): AP = 0.5*1 + 0.5*2/3.
    assert average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(5 / 6)


def test_average_precision_ties_form_one_threshold():
    # Both tied at 0.5: recall jumps 0 -> 1 at precision 1/2.
    assert average_precision([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert average_precision([1, 0, 1], [0.9, 0.1, 0.8]) == pytest.approx(1.0)


def test_average_precision_needs_a_defect():
    with pytest.raises(ValueError, match="defective"):
        average_precision([0, 0], [0.1, 0.2])


def test_precision_recall_f1_counts():
    result = precision_recall_f1([1, 1, 0, 0, 1], [0.9, 0.4, 0.6, 0.1, 0.5], threshold=0.5)
    assert (result["tp"], result["fp"], result["tn"], result["fn"]) == (2, 1, 1, 1)
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(2 / 3)


def test_precision_recall_f1_threshold_is_inclusive_and_zero_division_is_zero():
    assert precision_recall_f1([1, 0], [0.5, 0.2], threshold=0.5)["tp"] == 1
    nothing = precision_recall_f1([1, 0], [0.1, 0.2], threshold=0.9)
    assert nothing["precision"] == 0.0 and nothing["recall"] == 0.0 and nothing["f1"] == 0.0


def test_confusion_matrix():
    assert confusion_matrix([1, 0, 1, 0], [True, True, False, False]) == {
        "tp": 1,
        "fp": 1,
        "tn": 1,
        "fn": 1,
    }


def test_threshold_for_recall():
    labels = [1, 1, 1, 1, 0]
    scores = [0.9, 0.8, 0.3, 0.2, 0.5]
    assert threshold_for_recall(labels, scores, 0.5) == 0.8
    assert threshold_for_recall(labels, scores, 0.75) == 0.3
    assert threshold_for_recall(labels, scores, 0.76) == 0.2
    assert threshold_for_recall(labels, scores, 1.0) == 0.2
    threshold = threshold_for_recall(labels, scores, 0.75)
    assert precision_recall_f1(labels, scores, threshold)["recall"] >= 0.75
    with pytest.raises(ValueError):
        threshold_for_recall(labels, scores, 0.0)


def test_pixel_iou_and_dice_of_known_masks():
    pred = np.zeros((4, 4), bool)
    true = np.zeros((4, 4), bool)
    pred[0:2, 0:2] = True  # 4 pixels
    true[1:3, 1:3] = True  # 4 pixels, 1 shared
    assert pixel_iou(pred, true) == pytest.approx(1 / 7)
    assert pixel_dice(pred, true) == pytest.approx(2 / 8)


def test_pixel_metrics_of_empty_masks():
    empty = np.zeros((3, 3), bool)
    assert pixel_iou(empty, empty) == 1.0
    assert pixel_dice(empty, empty) == 1.0
    full = np.ones((3, 3), bool)
    assert pixel_iou(empty, full) == 0.0


def test_pixel_metrics_on_a_batch_use_the_union():
    a_pred, a_true = np.ones((2, 2), bool), np.ones((2, 2), bool)  # 4 / 4
    b_pred, b_true = np.zeros((2, 2), bool), np.zeros((2, 2), bool)
    b_true[0, 0] = True  # 0 / 1
    assert pixel_iou([a_pred, b_pred], [a_true, b_true]) == pytest.approx(4 / 5)
    with pytest.raises(ValueError, match="shapes differ"):
        pixel_iou([np.zeros((2, 2))], [np.zeros((3, 3))])


def test_connected_components_of_known_mask():
    mask = np.array(
        [
            [1, 1, 0, 0, 0],
            [0, 1, 0, 0, 1],
            [0, 0, 1, 0, 1],
            [1, 0, 0, 0, 0],
        ],
        bool,
    )
    labels, count = connected_components(mask)
    assert count == 3  # the diagonal joins (1, 1) and (2, 2) under 8-connectivity
    assert labels[0, 0] == labels[2, 2] == 1
    assert labels[1, 4] == labels[2, 4] == 2
    assert labels[3, 0] == 3
    assert labels[~mask].max() == 0
    _, count4 = connected_components(mask, connectivity=4)
    assert count4 == 4
    assert component_boxes(mask) == [(0, 0, 3, 3), (4, 1, 5, 3), (0, 3, 1, 4)]


def test_connected_components_matches_a_flood_fill():
    rng = np.random.default_rng(1)
    for _ in range(40):
        mask = rng.random((rng.integers(1, 15), rng.integers(1, 15))) < rng.random() * 0.7
        labels, count = connected_components(mask)
        assert labels.max() == count
        assert _flood_fill_count(mask) == count
        for component in range(1, count + 1):
            assert _flood_fill_count(labels == component) == 1


def _flood_fill_count(mask: np.ndarray) -> int:
    seen = np.zeros_like(mask)
    count = 0
    for y, x in zip(*np.nonzero(mask), strict=True):
        if seen[y, x]:
            continue
        count += 1
        stack = [(y, x)]
        seen[y, x] = True
        while stack:
            cy, cx = stack.pop()
            for ny in range(max(cy - 1, 0), min(cy + 2, mask.shape[0])):
                for nx in range(max(cx - 1, 0), min(cx + 2, mask.shape[1])):
                    if mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
    return count


def test_connected_components_handles_spirals_and_empty():
    labels, count = connected_components(np.zeros((5, 7), bool))
    assert count == 0 and labels.shape == (5, 7)
    spiral = np.zeros((21, 21), bool)
    spiral[0, :] = spiral[:, 20] = spiral[20, :] = spiral[2:, 0] = True
    spiral[2, 0:18] = spiral[2:18, 18] = spiral[18, 2:19] = spiral[4:18, 2] = True
    assert connected_components(spiral)[1] == 1


def test_connected_components_is_fast_on_a_full_frame():
    mask = np.zeros((576, 1024), bool)
    mask[100:104, 50:900] = True
    mask[200:400, 300:302] = True
    mask[450, 10:1000:3] = True
    connected_components(mask)
    started = time.perf_counter()
    labels, count = connected_components(mask)
    elapsed = time.perf_counter() - started
    assert count == 2 + len(range(10, 1000, 3))
    assert elapsed < 0.2  # about 5 ms; generous for a shared machine


def test_region_recall_with_a_mask():
    true = np.zeros((20, 20), bool)
    true[2, 2:10] = True  # a scratch
    true[15:18, 15:18] = True  # a spot
    assert region_hits(true, [(5, 0, 6, 5)]) == (1, 2)
    assert region_recall(true, [(5, 0, 6, 5)]) == 0.5
    assert region_recall(true, [(0, 0, 20, 20)]) == 1.0
    assert region_recall(true, []) == 0.0
    # Covering 1 of the scratch's 8 pixels is not half of it.
    assert region_recall(true, [(5, 0, 6, 5), (0, 14, 20, 20)], min_overlap=0.5) == 0.5


def test_region_recall_with_boxes_and_without_defects():
    true_boxes = [(0, 0, 10, 10), (20, 20, 30, 30)]
    assert region_recall(true_boxes, [(8, 8, 12, 12)]) == 0.5
    assert region_recall(true_boxes, [(8, 8, 12, 12)], min_overlap=0.1) == 0.0
    assert region_recall(np.zeros((5, 5), bool), [(0, 0, 2, 2)]) == 1.0
    assert region_hits([], [(0, 0, 2, 2)]) == (0, 0)
