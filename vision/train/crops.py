"""Training crops and augmentation: where to cut, flips and quarter turns, zoom, lighting."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.nn import functional as F

from vision.train.samples import Sample


def crop_sample(
    sample: Sample, size: int, rng: random.Random, centre: tuple[int, int] | None
) -> tuple:
    """A size x size crop around `centre` (y, x; jittered) or anywhere, edge-padded when the
    image is smaller, with its targets."""
    height, width = sample.image.shape[:2]
    if centre is not None:
        cy, cx = centre
        top = int(cy) - size // 2 + rng.randint(-size // 4, size // 4)
        left = int(cx) - size // 2 + rng.randint(-size // 4, size // 4)
    else:
        # Overshoot, then clamp: a quarter crop's worth of positions falls on each border.
        # Uniform positions would show an image's border in almost no clean crop, while crops
        # centred on a defect at the edge (a chipped tile) show it every time, and the model
        # would learn "border means defect".
        top = rng.randint(-size // 4, max(0, height - size) + size // 4)
        left = rng.randint(-size // 4, max(0, width - size) + size // 4)
    top = min(max(0, top), max(0, height - size))
    left = min(max(0, left), max(0, width - size))
    image = sample.image[top : top + size, left : left + size]
    mask = (
        None
        if sample.pixel_mask is None
        else sample.pixel_mask[top : top + size, left : left + size]
    )
    pad_h, pad_w = size - image.shape[0], size - image.shape[1]
    if pad_h or pad_w:
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        if mask is not None:
            mask = np.pad(mask, ((0, pad_h), (0, pad_w)), mode="constant")
    boxes = tuple(
        (x0 - left, y0 - top, x1 - left, y1 - top)
        for x0, y0, x1, y1 in sample.boxes
        if x1 > left and x0 < left + size and y1 > top and y0 < top + size
    )
    if mask is not None:
        label = int(mask.any())
    elif sample.boxes:
        label = int(bool(boxes))
    else:
        label = sample.label
    return image, mask, boxes, label


def augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Lighting and sensor variation on normalised (N, 3, H, W) crops, in place. The sensor
    noise is one value per pixel shared by the channels (luminance noise, what a camera's
    noise mostly is): a third of the random numbers, which were a tenth of a training step."""
    n = batch.shape[0]
    gain = 1.0 + (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.6
    colour = 1.0 + (torch.rand(n, 3, 1, 1, generator=generator) - 0.5) * 0.2
    offset = (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.4
    noise = torch.randn((n, 1, *batch.shape[2:]), generator=generator)
    noise.mul_(torch.rand(n, 1, 1, 1, generator=generator) * 0.06).add_(offset)
    return batch.mul_(gain * colour).add_(noise)


def flip_rotate(
    image: np.ndarray, mask: np.ndarray | None, rng: random.Random, *, rotate: bool = True
) -> tuple:
    turns = rng.randrange(4) if rotate else 2 * rng.randrange(2)
    flip = rng.random() < 0.5
    image = np.rot90(image, turns)
    mask = None if mask is None else np.rot90(mask, turns)
    if flip:
        image = image[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]
    return np.ascontiguousarray(image), None if mask is None else np.ascontiguousarray(mask)


def resize_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, S, S) crops resized to size x size, bilinear. Zoom shrinks by at most
    exp(scale_jitter) (1.35 at 0.3), where plain bilinear barely aliases; the antialiased
    kernel took 15 ms a batch against 2 ms, a sixth of a training step on one core."""
    resized = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return resized.contiguous(memory_format=torch.channels_last)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A square bool mask resized to size x size; a thin stroke survives shrinking (a pixel is a
    defect when any pixel it covers was)."""
    tensor = torch.from_numpy(np.ascontiguousarray(mask)).float()[None, None]
    if mask.shape[0] > size:
        tensor = F.adaptive_max_pool2d(tensor, size)
    else:
        tensor = F.interpolate(tensor, size=(size, size), mode="nearest")
    return tensor[0, 0].numpy() > 0
