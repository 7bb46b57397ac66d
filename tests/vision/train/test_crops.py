"""vision.train.crops: zoom keeps thin strokes in the crop's targets."""

import numpy as np

from vision.train.crops import resize_mask


def test_zoom_augmentation_keeps_thin_strokes_in_the_targets():
    stroke = np.zeros((240, 240), dtype=bool)
    stroke[100, 20:200] = True  # one pixel wide
    shrunk = resize_mask(stroke, 192)
    assert shrunk.shape == (192, 192) and shrunk.any(axis=1).sum() == 1
    assert shrunk.sum() >= 140
    grown = resize_mask(stroke[:160, :160], 192)
    assert grown.shape == (192, 192) and grown.any()
