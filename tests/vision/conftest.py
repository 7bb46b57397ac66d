"""Shared fixtures for the vision tests: one tiny trained artifact for the whole session."""

from __future__ import annotations

import pytest
import torch

from vision.synth import synth_items
from vision.train import TrainConfig, train

TINY_SIZE = (128, 72)


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    # Unit tests share two cores with everything else: keep torch from oversubscribing them.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_items():
    return synth_items(16, seed=7, size=TINY_SIZE, defect_rate=0.5)


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory, tiny_items):
    """A model trained for a few steps: enough to exercise saving, loading and serving (one
    view: test_flips_artifact serves with test-time flips)."""
    config = TrainConfig(
        max_steps=4, steps_per_epoch=2, batch_size=4, crop=64, seed=3, test_time_flips=False
    )
    result = train(tiny_items, config=config)
    path = tmp_path_factory.mktemp("artifact") / "tiny.pt"
    result.save(path)
    return path


@pytest.fixture(scope="session")
def flips_artifact(tmp_path_factory, tiny_items):
    """A model that serves with test-time flips (the recipe's choice for small parts)."""
    config = TrainConfig(
        max_steps=4, steps_per_epoch=2, batch_size=4, crop=64, seed=3, test_time_flips=True
    )
    path = tmp_path_factory.mktemp("artifact") / "flips.pt"
    train(tiny_items, config=config).save(path)
    return path
