"""vision.train.loop: a whole training run, its progress, cancelling, data checks, metadata."""

import dataclasses
from dataclasses import replace

import numpy as np
import pytest
import torch

from vision.artifacts import load_artifact
from vision.datasets import Item
from vision.inference import Predictor
from vision.reference import as_station_sends
from vision.synth import synth_items
from vision.train import TrainConfig, TrainingCancelled, TrainingDataError, train
from vision.train.samples import load_sample
from vision.train.trainer import Trainer

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


def test_too_few_good_images_and_no_defect_is_a_clear_error():
    oks = [item for item in synth_items(12, seed=1, size=(64, 36), defect_rate=0.0)]
    with pytest.raises(TrainingDataError, match="12 good images are too few"):
        train(oks, config=FAST)


def test_a_validation_split_without_defects_is_a_clear_error(tiny_items):
    oks = [item for item in tiny_items if item.label == "ok"]
    with pytest.raises(TrainingDataError, match="validation split needs defect and ok"):
        train(tiny_items, config=FAST, val_items=oks)


def test_only_good_images_train_a_good_only_model_on_synthesised_defects():
    """A new line: 40 good phones, no defect labelled. The model trains on defects synthesised
    on them (half of every batch, each with its mask), validates on good images and synthetic
    defects, and says which kind it is. (How well it finds real defects is a benchmark:
    bench/vision_accuracy.py --only tiles_good_only.)"""
    oks = synth_items(40, seed=2, size=(128, 72), defect_rate=0.0)
    config = replace(FAST, max_steps=6, steps_per_epoch=3, crop=64, reference_images=0)
    result = train(oks, config=config)
    assert result.metadata["kind"] == "good_only"
    assert result.metadata["recipe"]["kind"] == "good_only"
    assert result.metadata["metrics"]["val_auroc"] is not None  # synthetic defects on val
    samples = [load_sample(item) for item in oks]
    trainer = Trainer(samples, replace(config, rotate=True, scale_jitter=0.3), torch.device("cpu"),
                      synthetic_defects=True)  # fmt: skip
    batch = trainer.draw_batch()
    assert batch.labels == [1, 0] * (config.batch_size // 2)
    crops = list(zip(batch.masks, batch.labels, strict=True))
    assert all(mask.any() for mask, label in crops if label)
    assert not any(mask.any() for mask, label in crops if not label)
    assert all(mask.shape == (64, 64) for mask in batch.masks)


def test_settings_left_unset_are_chosen_from_the_data_and_the_given_ones_kept(tiny_items):
    result = train(tiny_items, config=replace(FAST, scale_jitter=0.1))
    recipe = result.metadata["recipe"]
    choices = {c["setting"]: c for c in recipe["choices"]}
    assert choices["scale_jitter"] == {
        "setting": "scale_jitter",
        "value": 0.1,
        "reason": "set by the user",
        "chosen": False,
    }
    # Synthetic phones: no grain, one size, a handful of validation images.
    assert (choices["rotate"]["value"], choices["rotate"]["chosen"]) == (True, True)
    assert "no grain direction" in choices["rotate"]["reason"]
    assert choices["patience"]["value"] >= 100
    config = result.metadata["train_config"]
    assert (config["rotate"], config["scale_jitter"]) == (True, 0.1)
    assert recipe["measured"]["training_images"] == result.metadata["training_data"]["train_count"]


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


def test_loss_goes_down_on_synthetic_phones():
    items = synth_items(24, seed=2, size=(256, 144), defect_rate=0.5, defect_types=None)
    config = TrainConfig(max_steps=40, steps_per_epoch=20, batch_size=8, crop=96, seed=1)
    result = train(items, config=config)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_zoom_augmentation_trains_and_is_recorded():
    config = TrainConfig(max_steps=4, steps_per_epoch=2, batch_size=4, crop=64, scale_jitter=0.3)
    result = train(synth_items(12, seed=2, size=(128, 72)), config=config)
    assert result.metadata["train_config"]["scale_jitter"] == 0.3


def test_metadata_holds_a_reference_of_clean_validation_images(tiny_artifact):
    metadata = load_artifact(tiny_artifact).metadata
    reference = metadata["reference"]
    # A tiny validation split has few clean images: topped up from the training split.
    assert reference["source"] == "validation and training images"
    assert reference["clean_only"] is True
    count = reference["count"]
    data = metadata["training_data"]
    assert data["validation_count"] < count <= data["validation_count"] + data["train_count"]
    assert len(reference["embeddings"]) == len(reference["scores"]) == count
    assert {len(row) for row in reference["embeddings"]} == {32}
    assert set(reference["image_stats"]) == {
        "brightness",
        "contrast",
        "sharpness",
        "r_g",
        "b_g",
        "saturation",
    }
    assert all(len(values) == count for values in reference["image_stats"].values())
    assert all(0.0 <= score <= 1.0 for score in reference["scores"])
    assert metadata["train_config"]["reference_images"] == 300


def test_reference_is_the_clean_validation_images_as_served(tiny_items):
    val_items = synth_items(10, seed=21, size=(128, 72), defect_rate=0.5)
    clean = [item for item in val_items if item.label == "ok"]
    assert 2 < len(clean) < len(val_items)
    config = dataclasses.replace(FAST, reference_images=len(clean))  # no top-up needed
    result = train(tiny_items, config=config, val_items=val_items)
    reference = result.metadata["reference"]
    assert reference["count"] == len(clean) and reference["source"] == "validation images"
    served = Predictor(result.model, result.metadata).predict(
        [as_station_sends(item.image) for item in clean]
    )
    assert reference["embeddings"] == [p.embedding_list() for p in served]
    assert reference["scores"] == [round(p.score, 6) for p in served]


def test_reference_images_caps_or_disables_the_reference(tiny_items):
    val_items = synth_items(10, seed=21, size=(128, 72), defect_rate=0.5)
    capped = train(tiny_items, config=replace(FAST, reference_images=2), val_items=val_items)
    assert capped.metadata["reference"]["count"] == 2
    disabled = train(tiny_items, config=replace(FAST, reference_images=0), val_items=val_items)
    assert "reference" not in disabled.metadata


def test_a_small_validation_split_is_topped_up_with_clean_training_images(tiny_items):
    val_items = synth_items(10, seed=21, size=(128, 72), defect_rate=0.5)
    clean_val = [item for item in val_items if item.label == "ok"]
    clean_train = [item for item in tiny_items if item.label == "ok"]
    result = train(tiny_items, config=FAST, val_items=val_items)
    reference = result.metadata["reference"]
    assert reference["source"] == "validation and training images"
    assert reference["count"] == min(len(clean_val) + len(clean_train), 300)
