"""vision.train.crops: zoom keeps thin strokes in the crop's targets; batches are normalised
and augmented in one pass."""

import numpy as np
import torch

from vision.model import images_to_tensor
from vision.train.crops import augmented_batch, resize_mask


def test_zoom_augmentation_keeps_thin_strokes_in_the_targets():
    stroke = np.zeros((240, 240), dtype=bool)
    stroke[100, 20:200] = True  # one pixel wide
    shrunk = resize_mask(stroke, 192)
    assert shrunk.shape == (192, 192) and shrunk.any(axis=1).sum() == 1
    assert shrunk.sum() >= 140
    grown = resize_mask(stroke[:160, :160], 192)
    assert grown.shape == (192, 192) and grown.any()


def test_a_batch_is_normalised_as_serving_normalises_then_varied_per_crop():
    """Normalising and augmenting in one pass: each crop is the served normalisation of its
    pixels times a gain and colour cast, plus an offset and noise, the same as in two passes."""
    crops = [
        np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8) for i in range(4)
    ]
    batch = augmented_batch(crops, 32, torch.Generator().manual_seed(3))
    draws = torch.Generator().manual_seed(3)
    gain = 1.0 + (torch.rand(4, 1, 1, 1, generator=draws) - 0.5) * 0.6
    colour = 1.0 + (torch.rand(4, 3, 1, 1, generator=draws) - 0.5) * 0.2
    offset = (torch.rand(4, 1, 1, 1, generator=draws) - 0.5) * 0.4
    noise = torch.randn((4, 1, 32, 32), generator=draws)
    noise *= torch.rand(4, 1, 1, 1, generator=draws) * 0.06
    expected = images_to_tensor(crops) * gain * colour + offset + noise
    assert batch.shape == (4, 3, 32, 32)
    assert torch.allclose(batch, expected, atol=1e-4)
    zoomed = augmented_batch(crops, 24, torch.Generator().manual_seed(3))
    assert zoomed.shape == (4, 3, 24, 24)
    assert zoomed.is_contiguous(memory_format=torch.channels_last)
