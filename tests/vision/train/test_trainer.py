"""vision.train.trainer: hard-example mining feeds the crops the model is trained on."""

import numpy as np
import torch

from vision.metrics import connected_components
from vision.synth import synth_items
from vision.train import TrainConfig
from vision.train.samples import load_sample
from vision.train.trainer import Trainer


def test_missed_defects_are_mined_as_hard_positives_until_the_model_finds_them():
    items = synth_items(6, seed=3, size=(128, 72), defect_rate=1.0)
    samples = [load_sample(item) for item in items]
    config = TrainConfig(hard_positive_share=1.0, mine_images=6, crop=64, seed=5)
    trainer = Trainer(samples, config, torch.device("cpu"))
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
