"""Defects synthesised on good images, for a line that has no labelled defect yet.

A new line starts with hundreds of good parts and no defect. Trained on those alone, the model
learns what the good surface looks like by telling it apart from the same surface with an
anomaly pasted in, in the spirit of CutPaste (Li et al., CVPR 2021) and DRAEM (Zavrtanik et
al., ICCV 2021), from scratch (no pretrained weights exist here). Each synthetic defect comes
with its exact pixel mask, so the heatmap is trained cell by cell like a labelled mask.

Three kinds, drawn in turn, so the model does not learn one artefact:
- a patch of the same surface cut elsewhere, turned, brightened or darkened and pasted
  (CutPaste): a misplaced piece of texture, a chip, a stain;
- a thin scar: a narrow rotated stroke of other surface or of a darker or lighter tone (a
  scratch, a crack);
- a blob with a smooth irregular outline (thresholded smooth noise, as DRAEM's Perlin masks)
  blended with another image's texture or a shifted tone (a blowhole, unevenness, a spot).

Nothing here imports Django; all randomness comes from the `random.Random` passed in.
"""

from __future__ import annotations

import math
import random

import numpy as np


def synthesize(image: np.ndarray, rng: random.Random, *, other: np.ndarray | None = None):
    """(image with one synthetic defect, its bool mask). `image` is (H, W, 3) uint8 and is not
    changed; `other` is a second good image to take foreign texture from (else `image`)."""
    kind = rng.randrange(3)
    source = other if other is not None and rng.random() < 0.5 else image
    for _ in range(4):  # a defect that came out empty or invisible is drawn again
        if kind == 0:
            result, mask = _cut_paste(image, source, rng)
        elif kind == 1:
            result, mask = _scar(image, source, rng)
        else:
            result, mask = _blob(image, source, rng)
        if mask.any() and np.abs(result.astype(np.int16) - image).max() >= 12:
            return result, mask
        kind = rng.randrange(3)
    return result, mask


def _tone(patch: np.ndarray, rng: random.Random, surface: float = 128.0) -> np.ndarray:
    """The patch darker or lighter, with a little contrast change, clipped to 0..255. Darker
    the more often the brighter the surface (`surface`: its mean level): pits, cracks and
    chips show dark on a mid-grey tile, stains and scratches light on a dark screen."""
    dark = min(0.8, max(0.2, 1.5 * surface / 255.0))
    gain = rng.uniform(0.3, 0.8) if rng.random() < dark else rng.uniform(1.2, 1.8)
    offset = rng.uniform(-30, 30)
    mean = patch.mean(axis=(0, 1), keepdims=True)
    return np.clip((patch - mean) * rng.uniform(0.7, 1.5) + mean * gain + offset, 0, 255)


def _cut_paste(image: np.ndarray, source: np.ndarray, rng: random.Random):
    height, width = image.shape[:2]
    area = rng.uniform(0.002, 0.03) * height * width
    aspect = math.exp(rng.uniform(-1.0, 1.0))
    ph = int(np.clip(math.sqrt(area / aspect), 3, height // 2))
    pw = int(np.clip(math.sqrt(area * aspect), 3, width // 2))
    sh, sw = source.shape[:2]
    ph, pw = min(ph, sh), min(pw, sw)
    sy, sx = rng.randrange(sh - ph + 1), rng.randrange(sw - pw + 1)
    patch = source[sy : sy + ph, sx : sx + pw].astype(np.float32)
    patch = np.rot90(patch, rng.randrange(4))
    patch = _tone(patch, rng, float(image.mean())) if rng.random() < 0.7 else patch
    ph, pw = patch.shape[:2]
    ph, pw = min(ph, height), min(pw, width)
    patch = patch[:ph, :pw]
    y, x = rng.randrange(height - ph + 1), rng.randrange(width - pw + 1)
    result = image.copy()
    result[y : y + ph, x : x + pw] = patch.astype(np.uint8)
    mask = np.zeros((height, width), dtype=bool)
    mask[y : y + ph, x : x + pw] = True
    return result, mask


def _scar(image: np.ndarray, source: np.ndarray, rng: random.Random):
    height, width = image.shape[:2]
    length = rng.uniform(0.1, 0.4) * min(height, width) + 4
    thickness = rng.uniform(1.0, 4.0)
    angle = rng.uniform(0, math.pi)
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    dy, dx = ys - cy, xs - cx
    along = dx * math.cos(angle) + dy * math.sin(angle)
    across = -dx * math.sin(angle) + dy * math.cos(angle)
    # A slight bend: real scratches are rarely straight.
    across = across - rng.uniform(-0.004, 0.004) * along**2
    mask = (np.abs(along) <= length / 2) & (np.abs(across) <= thickness / 2)
    filler = _tone(_resized_like(source, image, rng).astype(np.float32), rng, float(image.mean()))
    result = image.copy()
    result[mask] = filler[mask].astype(np.uint8)
    return result, mask


def _blob(image: np.ndarray, source: np.ndarray, rng: random.Random):
    height, width = image.shape[:2]
    radius = rng.uniform(0.03, 0.15) * min(height, width) + 2
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = np.arctan2(ys - cy, xs - cx)
    # An irregular outline: the radius wobbles with a few low harmonics.
    wobble = sum(
        rng.uniform(0.05, 0.3) * np.cos(k * angle + rng.uniform(0, 2 * math.pi))
        for k in range(2, 5)
    )
    distance = np.hypot(ys - cy, xs - cx) / (radius * (1 + wobble))
    mask = distance <= 1.0
    filler = _resized_like(source, image, rng).astype(np.float32)
    filler = _tone(filler, rng, float(image.mean()))
    strength = rng.uniform(0.6, 1.0)
    # Soft inside the outline's last tenth, so the edge is not a sharp cut.
    alpha = (np.clip((1.0 - distance) / 0.1, 0.0, 1.0) * strength)[..., None]
    result = (image * (1 - alpha) + filler * alpha).astype(np.uint8)
    return result, mask


def _resized_like(source: np.ndarray, image: np.ndarray, rng: random.Random) -> np.ndarray:
    """`source` shifted and tiled to `image`'s size (texture from elsewhere)."""
    height, width = image.shape[:2]
    sy, sx = rng.randrange(source.shape[0]), rng.randrange(source.shape[1])
    rolled = np.roll(source, (sy, sx), axis=(0, 1))
    reps = (-(-height // source.shape[0]), -(-width // source.shape[1]), 1)
    return np.tile(rolled, reps)[:height, :width]
