"""vision.train.samples: items loaded with their supervision."""

import numpy as np

from vision.datasets import Item
from vision.train.samples import load_sample


def test_a_mask_over_a_large_area_is_coarse_and_a_thin_one_is_not():
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    area = np.zeros((64, 64), dtype=bool)
    area[:32, :] = True
    thin = np.zeros((64, 64), dtype=bool)
    thin[10, 5:40] = True
    assert load_sample(Item(label="defect", image=image, mask=area), 0.02).coarse
    assert not load_sample(Item(label="defect", image=image, mask=thin), 0.02).coarse
