"""vision.train.trainer: hard-example mining feeds the crops the model is trained on."""

import numpy as np
import pytest
import torch

from vision.metrics import connected_components
from vision.synth import synth_items
from vision.train import TrainConfig
from vision.train.samples import load_sample
from vision.train.trainer import Trainer, training_precision


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


def _trainer(seed: int = 5, **settings) -> Trainer:
    items = synth_items(8, seed=3, size=(128, 72), defect_rate=0.5)
    config = TrainConfig(crop=64, batch_size=4, seed=seed, scale_jitter=0.3, **settings)
    return Trainer([load_sample(item) for item in items], config, torch.device("cpu"))


def test_batches_drawn_ahead_in_a_thread_are_the_ones_the_seed_gives_in_order():
    ahead = list(_trainer().prefetched(5))
    in_order = _trainer()
    inline = [in_order.draw_batch() for _ in range(5)]
    for first, second in zip(ahead, inline, strict=True):
        assert torch.equal(first.images, second.images)
        assert first.labels == second.labels
        assert all(
            (a is None and b is None) or np.array_equal(a, b)
            for a, b in zip(first.masks, second.masks, strict=True)
        )


def test_closing_the_batches_early_finishes_the_draw_in_flight():
    """Training stops mid-epoch (the time budget): the batch drawn ahead is finished before
    mining draws from the same random streams, so the next draws are the seed's."""
    trainer = _trainer()
    batches = trainer.prefetched(10)
    next(batches)
    batches.close()
    reference = _trainer()
    reference.draw_batch(), reference.draw_batch()
    assert torch.equal(trainer.draw_batch().images, reference.draw_batch().images)


def test_training_precision_is_float32_unless_the_device_has_bfloat16():
    assert training_precision("float32", torch.device("cpu")) == "float32"
    assert training_precision("bfloat16", torch.device("cpu")) == "bfloat16"
    native = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    assert training_precision("auto", torch.device("cpu")) == ("bfloat16" if native else "float32")
    with pytest.raises(ValueError, match="precision must be one of"):
        training_precision("half", torch.device("cpu"))


def test_a_bfloat16_step_gives_a_float32_loss_and_float32_weights():
    trainer = _trainer(precision="bfloat16")
    loss = trainer.batch_loss()
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(p.dtype == torch.float32 and p.grad is not None for p in trainer.model.parameters())
