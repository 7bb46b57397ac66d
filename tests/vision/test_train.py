import numpy as np
import pytest
import torch

from vision.artifacts import load_artifact
from vision.datasets import Item
from vision.inference import Predictor, heatmap_regions
from vision.metrics import connected_components
from vision.synth import synth_items
from vision.train import (
    REGION_THRESHOLD_RANGE,
    TrainConfig,
    TrainingCancelled,
    TrainingDataError,
    _box_bag_loss,
    _load_sample,
    _mask_bag_loss,
    _resize_mask,
    _Trainer,
    calibrate_thresholds,
    region_threshold_for,
    train,
)

FAST = TrainConfig(max_steps=3, steps_per_epoch=3, batch_size=4, crop=64, seed=5)


def test_artifact_metadata_says_how_it_was_made(tiny_artifact, tiny_items):
    metadata = load_artifact(tiny_artifact).metadata
    assert metadata["architecture"] == "scratchnet-v1"
    assert metadata["thresholds"]["pass"] <= metadata["thresholds"]["fail"]
    assert len(metadata["training_data"]["hash"]) == 64
    assert metadata["library_versions"]["torch"] == torch.__version__
    assert metadata["train_config"]["seed"] == 3
    assert {"val_loss", "best_epoch"} <= set(metadata["metrics"])


def test_same_seed_same_weights(tiny_items):
    first = train(tiny_items, config=FAST).model.state_dict()
    second = train(tiny_items, config=FAST).model.state_dict()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_progress_reports_steps_and_epochs_in_order(tiny_items):
    events = []
    train(tiny_items, config=FAST, progress=events.append)
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert steps == [1, 2, 3]
    epoch = next(e for e in events if e["event"] == "epoch")
    assert {"train_loss", "val_loss", "fraction"} - set(epoch) == {"fraction"}
    assert events[-1]["event"] == "done"
    assert all(0 <= e["fraction"] <= 1 for e in events if e["event"] == "step")


def test_should_stop_cancels_without_a_model(tiny_items):
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(TrainingCancelled, match="step 2"):
        train(tiny_items, config=FAST, should_stop=should_stop)


def test_needs_both_classes():
    oks = [item for item in synth_items(12, seed=1, size=(64, 36), defect_rate=0.0)]
    with pytest.raises(TrainingDataError, match="both ok and defect"):
        train(oks, config=FAST)


def test_boxes_and_bare_labels_are_enough_to_train():
    """Inspectors give boxes or just a verdict: training must take those without masks."""
    items = synth_items(16, seed=9, size=(128, 72), defect_rate=0.5)
    weak = []
    for index, item in enumerate(items):
        if item.label == "defect" and index % 2:
            weak.append(Item(label="defect", image=item.image, boxes=item.boxes, group=item.group))
        elif item.label == "defect":
            weak.append(Item(label="defect", image=item.image, group=item.group))
        else:
            weak.append(Item(label="ok", image=item.image, group=item.group))
    result = train(weak, config=FAST)
    assert np.isfinite(result.history[-1]["train_loss"])


def test_box_loss_rewards_a_hot_cell_inside_the_box_and_cold_cells_outside():
    box = [(8, 8, 24, 24)]  # cells 1..2 in each direction at stride 8
    cold = torch.full((1, 6, 6), -5.0)
    hot_inside = cold.clone()
    hot_inside[0, 2, 2] = 5.0
    hot_outside = cold.clone()
    hot_outside[0, 5, 5] = 5.0
    assert _box_bag_loss(hot_inside, box, 8)[0] < _box_bag_loss(cold, box, 8)[0]
    assert _box_bag_loss(hot_inside, box, 8)[0] < _box_bag_loss(hot_outside, box, 8)[0]


def test_loss_goes_down_on_synthetic_phones():
    items = synth_items(24, seed=2, size=(256, 144), defect_rate=0.5, defect_types=None)
    config = TrainConfig(max_steps=40, steps_per_epoch=20, batch_size=8, crop=96, seed=1)
    result = train(items, config=config)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_thresholds_keep_the_target_recall_and_leave_a_margin():
    labels = np.array([0] * 50 + [1] * 50)
    scores = np.concatenate([np.linspace(0.0, 0.4, 50), np.linspace(0.6, 1.0, 50)])
    thresholds = calibrate_thresholds(labels, scores, target_recall=0.99, target_precision=0.99)
    assert 0.4 < thresholds["pass"] <= 0.6  # between the classes: every defect is flagged
    assert thresholds["fail"] >= thresholds["pass"]
    assert (scores[labels == 1] >= thresholds["pass"]).mean() >= 0.99


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


def test_overlapping_classes_leave_an_uncertain_band():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 200 + [1] * 200)
    scores = np.concatenate([rng.beta(2, 5, 200), rng.beta(5, 2, 200)])
    thresholds = calibrate_thresholds(labels, scores, target_recall=0.99, target_precision=0.99)
    assert thresholds["pass"] < thresholds["fail"]
    flagged = scores[labels == 1] >= thresholds["pass"]
    assert flagged.mean() >= 0.99


def test_a_mask_over_a_large_area_trains_as_a_bag_not_cell_by_cell():
    """Area masks (a whole uneven patch) outline a region; only some cell inside must fire."""
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    area = np.zeros((64, 64), dtype=bool)
    area[:32, :] = True
    thin = np.zeros((64, 64), dtype=bool)
    thin[10, 5:40] = True
    assert _load_sample(Item(label="defect", image=image, mask=area), 0.02).coarse
    assert not _load_sample(Item(label="defect", image=image, mask=thin), 0.02).coarse

    truth = torch.zeros(1, 1, 8, 8)
    truth[0, 0, :4, :] = 1.0
    one_hot_cell = torch.full((1, 1, 8, 8), -5.0)
    one_hot_cell[0, 0, 1, 1] = 5.0  # a single confident cell inside is enough
    all_cold = torch.full((1, 1, 8, 8), -5.0)
    fires_outside = all_cold.clone()
    fires_outside[0, 0, 7, 7] = 5.0
    assert _mask_bag_loss(one_hot_cell, truth) < 0.05
    assert _mask_bag_loss(one_hot_cell, truth) < _mask_bag_loss(all_cold, truth)
    assert _mask_bag_loss(fires_outside, truth) > _mask_bag_loss(all_cold, truth)


def test_missed_defects_are_mined_as_hard_positives_until_the_model_finds_them():
    items = synth_items(6, seed=3, size=(128, 72), defect_rate=1.0)
    samples = [_load_sample(item) for item in items]
    config = TrainConfig(hard_positive_share=1.0, mine_images=6, crop=64, seed=5)
    trainer = _Trainer(samples, config, torch.device("cpu"))
    head = trainer.model.head
    torch.nn.init.zeros_(head.weight)

    torch.nn.init.constant_(head.bias, -4.0)  # sees nothing: every defect is missed
    trainer.mine_hard_examples()
    defects = sum(connected_components(_cell_map(s))[1] for s in samples)
    assert len(trainer.hard_positives) == defects > 0
    sample, (y, x) = trainer._pick(defect=True)
    near = sample.pixel_mask[max(0, y - 8) : y + 8, max(0, x - 8) : x + 8]
    assert near.any()  # the crop is centred on the missed defect

    torch.nn.init.constant_(head.bias, 4.0)  # now every defect shows
    trainer.mine_hard_examples()
    assert trainer.hard_positives == []


def _cell_map(sample) -> np.ndarray:
    mask = torch.from_numpy(sample.pixel_mask)[None, None].float()
    return (torch.nn.functional.max_pool2d(mask, 8, 8, ceil_mode=True)[0, 0] > 0).numpy()


def test_zoom_augmentation_keeps_thin_strokes_in_the_targets():
    stroke = np.zeros((240, 240), dtype=bool)
    stroke[100, 20:200] = True  # one pixel wide
    shrunk = _resize_mask(stroke, 192)
    assert shrunk.shape == (192, 192) and shrunk.any(axis=1).sum() == 1
    assert shrunk.sum() >= 140
    grown = _resize_mask(stroke[:160, :160], 192)
    assert grown.shape == (192, 192) and grown.any()
    config = TrainConfig(max_steps=4, steps_per_epoch=2, batch_size=4, crop=64, scale_jitter=0.3)
    result = train(synth_items(12, seed=2, size=(128, 72)), config=config)
    assert result.metadata["train_config"]["scale_jitter"] == 0.3
