"""vision.train.calibration: pass/fail thresholds and the region threshold."""

import numpy as np

from vision.inference import Predictor, heatmap_regions
from vision.train import REGION_THRESHOLD_RANGE, calibrate_thresholds, region_threshold_for


def test_thresholds_keep_the_target_recall_and_leave_a_margin():
    labels = np.array([0] * 50 + [1] * 50)
    scores = np.concatenate([np.linspace(0.0, 0.4, 50), np.linspace(0.6, 1.0, 50)])
    thresholds = calibrate_thresholds(labels, scores, target_recall=0.99, target_precision=0.99)
    assert 0.4 < thresholds["pass"] <= 0.6  # between the classes: every defect is flagged
    assert thresholds["fail"] >= thresholds["pass"]
    assert (scores[labels == 1] >= thresholds["pass"]).mean() >= 0.99


def test_overlapping_classes_leave_an_uncertain_band():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 200 + [1] * 200)
    scores = np.concatenate([rng.beta(2, 5, 200), rng.beta(5, 2, 200)])
    thresholds = calibrate_thresholds(labels, scores, target_recall=0.99, target_precision=0.99)
    assert thresholds["pass"] < thresholds["fail"]
    flagged = scores[labels == 1] >= thresholds["pass"]
    assert flagged.mean() >= 0.99


def test_region_threshold_sits_just_above_the_hottest_clean_validation_images():
    low, high = REGION_THRESHOLD_RANGE
    clean_peaks = np.linspace(0.05, 0.30, 100)  # the two hottest: 0.2975 and 0.30
    level = region_threshold_for(clean_peaks)
    assert 0.29 < level <= 0.3
    assert np.mean(clean_peaks >= level) <= 0.02  # at most 2% of clean images show a region
    assert region_threshold_for(np.full(50, 0.02)) == low  # sensor noise is never outlined
    assert region_threshold_for(np.full(50, 0.9)) == high  # a noisy model still shows strokes
    assert region_threshold_for(np.array([])) == high
    assert region_threshold_for(clean_peaks, configured=0.6) == 0.6


def test_artifact_region_threshold_is_calibrated_and_outlines_what_reaches_it(tiny_artifact):
    predictor = Predictor.from_artifact(tiny_artifact)
    low, high = REGION_THRESHOLD_RANGE
    assert low <= predictor.region_threshold <= high
    heatmap = np.zeros((4, 6), dtype=np.float32)
    heatmap[1, 2] = predictor.region_threshold
    heatmap[3, 5] = predictor.region_threshold - 0.01
    regions = heatmap_regions(
        heatmap, stride=8, image_size=(48, 32), threshold=predictor.region_threshold
    )
    assert [region.box for region in regions] == [(16, 8, 24, 16)]
