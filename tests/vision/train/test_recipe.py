"""vision.train.recipe: the settings a dataset gets when the user leaves them to the data."""

import numpy as np

from vision.train import TrainConfig
from vision.train.recipe import choose, texture_direction
from vision.train.samples import Sample


def grained(seed: int, shape=(96, 128), horizontal=True) -> np.ndarray:
    """A ground surface: fine stripes along one direction, with noise."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(128, 25, size=(shape[0], 1)) if horizontal else None
    base = np.repeat(rows, shape[1], axis=1) if horizontal else None
    base = base + rng.normal(0, 6, size=shape)
    return np.clip(np.repeat(base[..., None], 3, axis=2), 0, 255).astype(np.uint8)


def plain(seed: int, shape=(96, 128)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(40, 8, size=(*shape, 3)), 0, 255).astype(np.uint8)


def sample(image: np.ndarray, label: int = 0) -> Sample:
    mask = np.zeros(image.shape[:2], dtype=bool)
    if label:
        mask[10:14, 10:40] = True
    return Sample(image, label, mask, (), np.argwhere(mask) if label else None)


def test_a_surface_with_a_grain_is_told_from_a_plain_one():
    grain = texture_direction([grained(seed) for seed in range(6)])
    screen = texture_direction([plain(seed) for seed in range(6)])
    assert grain["coherence"] > 0.5
    assert abs(grain["angle_deg"] - 0) < 10 or abs(grain["angle_deg"] - 180) < 10
    assert screen["coherence"] < 0.1


def test_grain_turns_off_quarter_turns_and_varied_sizes_turn_on_zoom():
    samples = [sample(grained(s, shape=(60 + 30 * (s % 4), 128))) for s in range(12)]
    samples += [sample(grained(99, shape=(96, 128)), label=1)]
    config, recipe = choose(TrainConfig(), samples, validation_count=40)
    assert (config.rotate, config.scale_jitter) == (False, 0.3)
    assert config.patience >= 100  # 40 validation images: no early stop
    reasons = {c["setting"]: c["reason"] for c in recipe["choices"]}
    assert "grain direction" in reasons["rotate"]
    assert "sizes vary" in reasons["scale_jitter"]
    assert recipe["measured"]["defects"]["with_masks"] == 1


def test_one_sized_plain_screens_keep_turns_and_stop_early_on_a_large_validation():
    samples = [sample(plain(s)) for s in range(10)] + [sample(plain(50), label=1)]
    config, _ = choose(TrainConfig(), samples, validation_count=400)
    assert (config.rotate, config.scale_jitter, config.patience) == (True, 0.0, 20)


def test_what_the_user_set_is_kept():
    samples = [sample(grained(s)) for s in range(6)]
    config, recipe = choose(TrainConfig(rotate=True, patience=5), samples, validation_count=40)
    assert (config.rotate, config.patience) == (True, 5)
    kept = [c for c in recipe["choices"] if not c["chosen"]]
    assert {c["setting"] for c in kept} == {"rotate", "patience"}


def test_small_parts_are_scored_with_test_time_flips_and_captures_in_one_pass():
    parts = [sample(grained(s, shape=(300, 250))) for s in range(4)] + [
        sample(grained(9, shape=(300, 250)), label=1)
    ]
    config, recipe = choose(TrainConfig(), parts, validation_count=40)
    assert config.test_time_flips is True
    reasons = {c["setting"]: c["reason"] for c in recipe["choices"]}
    assert "cost less than one 1024x576 capture" in reasons["test_time_flips"]
    phones = [sample(plain(s, shape=(576, 1024))) for s in range(3)] + [
        sample(plain(7, shape=(576, 1024)), label=1)
    ]
    config, _ = choose(TrainConfig(), phones, validation_count=40)
    assert config.test_time_flips is False
    config, _ = choose(TrainConfig(test_time_flips=True), phones, validation_count=40)
    assert config.test_time_flips is True  # the user's choice
