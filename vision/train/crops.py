"""Training crops and augmentation: where to cut, flips and quarter turns, zoom, lighting."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.nn import functional as F

from vision.model import NORMALIZATION
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


def augmented_batch(
    crops: list[np.ndarray],
    size: int,
    generator: torch.Generator,
    normalization: dict | None = None,
) -> torch.Tensor:
    """Same-size (S, S, 3) uint8 crops -> normalised, augmented (N, 3, size, size) floats,
    channels-last: resized to `size` (bilinear) when S differs, then lighting and sensor
    variation. Normalising and augmenting are one affine map per crop and channel, applied in
    one pass with the noise; the separate passes (normalise, pad, resize, scale, shift, add)
    were most of the time it took to draw a batch."""
    pixels = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float()
    if pixels.shape[-1] != size or pixels.shape[-2] != size:
        pixels = resize_batch(pixels, size)
    return augment(pixels, generator, normalization=normalization)


def whole_image(image: np.ndarray, stride: int, generator: torch.Generator) -> torch.Tensor:
    """A whole (H, W, 3) uint8 image -> a normalised, augmented (1, 3, H', W') batch, padded
    up to the stride with its edge pixels."""
    pixels = torch.from_numpy(image[None]).permute(0, 3, 1, 2).float()
    pad_h, pad_w = (-image.shape[0]) % stride, (-image.shape[1]) % stride
    if pad_h or pad_w:
        pixels = F.pad(pixels, (0, pad_w, 0, pad_h), mode="replicate")
    return augment(pixels.contiguous(memory_format=torch.channels_last), generator)


def augment(
    pixels: torch.Tensor, generator: torch.Generator, *, normalization: dict | None = None
) -> torch.Tensor:
    """Lighting and sensor variation on (N, 3, H, W) 0..255 float pixels, normalised on the way
    (in place): a gain per crop and a colour cast per channel, an offset, and sensor noise, one
    value per pixel shared by the channels (luminance noise, what a camera's noise mostly is)."""
    n = pixels.shape[0]
    normalization = normalization or NORMALIZATION
    mean = torch.tensor(normalization["mean"]).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(normalization["std"]).view(1, 3, 1, 1) * 255.0
    gain = 1.0 + (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.6
    colour = 1.0 + (torch.rand(n, 3, 1, 1, generator=generator) - 0.5) * 0.2
    offset = (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.4
    noise = torch.randn((n, 1, *pixels.shape[2:]), generator=generator)
    noise.mul_(torch.rand(n, 1, 1, 1, generator=generator) * 0.06)
    # ((x - mean) / std) * gain * colour + offset + noise = x * scale + shift + noise
    scale = gain * colour / std
    shift = offset - mean * scale
    return pixels.mul_(scale).add_(shift).add_(noise)


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


def resize_masks(masks: list[np.ndarray | None], size: int) -> list[np.ndarray | None]:
    """Square bool masks (None: no mask) resized to size x size together (see resize_mask)."""
    present = [i for i, mask in enumerate(masks) if mask is not None]
    if not present:
        return list(masks)
    stacked = torch.from_numpy(np.stack([masks[i] for i in present]))[:, None].float()
    if stacked.shape[-1] > size:
        stacked = F.adaptive_max_pool2d(stacked, size)
    else:
        stacked = F.interpolate(stacked, size=(size, size), mode="nearest")
    resized = list(masks)
    for row, index in enumerate(present):
        resized[index] = stacked[row, 0].numpy() > 0
    return resized


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A square bool mask resized to size x size; a thin stroke survives shrinking (a pixel is a
    defect when any pixel it covers was)."""
    return resize_masks([mask], size)[0]
