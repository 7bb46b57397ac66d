"""vision.train.good_only: defects synthesised on good images, each with its exact mask."""

import random

import numpy as np

from vision.train.good_only import synthesize


def test_every_synthetic_defect_changes_the_pixels_its_mask_covers_and_nothing_else():
    rng = random.Random(0)
    image = np.random.default_rng(0).integers(60, 120, size=(80, 100, 3), dtype=np.uint8)
    before = image.copy()
    other = np.random.default_rng(1).integers(0, 255, size=(50, 70, 3), dtype=np.uint8)
    for _ in range(60):
        result, mask = synthesize(image, rng, other=other)
        assert result.shape == image.shape and result.dtype == np.uint8
        assert mask.shape == image.shape[:2] and mask.any()
        changed = np.abs(result.astype(int) - image).max(axis=2) > 0
        assert not (changed & ~mask).any()  # nothing outside the mask
        assert np.abs(result.astype(int) - image)[mask].max() >= 12  # visible
    assert (image == before).all()  # the good image itself is left as it was


def test_the_three_kinds_are_drawn_and_the_same_seed_draws_the_same():
    image = np.full((64, 64, 3), 100, dtype=np.uint8)
    shares = {
        round(float(synthesize(image, random.Random(seed))[1].mean()), 4) for seed in range(30)
    }
    assert len(shares) > 10  # sizes and shapes vary
    first = synthesize(image, random.Random(7))
    again = synthesize(image, random.Random(7))
    assert (first[0] == again[0]).all() and (first[1] == again[1]).all()
