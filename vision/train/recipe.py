"""The training recipe chosen from the data.

A quality team presses "train" on its own images and leaves the settings alone; what suits
thin scratches on phone screens (quarter turns, early stopping) does not suit ground magnetic
tiles (a texture with a direction, parts of many sizes, a few hundred images). Every setting
of TrainConfig that is None ("choose from the data") is chosen here from what the training
split shows, each with the measurement and the reason, which go into the artifact's metadata
and onto the training run's page. A setting the user gave is kept, and said so.

The measurements (training images only; the validation split is not looked at):
- texture direction: the median over small blocks of the fine-scale gradient structure
  tensor of the clean images. Ground or brushed surfaces have one grain direction, so the
  median tensor is elongated; screens and glass have none (near 0). Edges of the part are
  few blocks and do not move a median.
- image sizes: how much the shorter side varies between images (parts cut to many sizes, or
  photographed from varying distances).
- the validation split's size: on few images the validation AUROC jumps by chance, and
  early stopping on it stops at a lucky epoch.
- the defect area: the share of a defect image its mask covers (reported; coarse masks are
  trained as bags already, see samples.Sample).
- whether any defect is labelled at all: if not, the model is trained on good images only
  with defects synthesised on them (vision.train.good_only).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from vision.model import FLIP_VIEWS
from vision.train.samples import Sample

# Coherence of the median block structure tensor above which the surface has a grain
# direction. Measured on 48 clean images each: ground magnetic tiles 0.23 (single tiles
# 0.10-0.41), real phone screens (MSD) 0.05, synthetic phones 0.005-0.02.
DIRECTION_COHERENCE = 0.12
# Shorter-side spread (90th / 10th percentile) above which sizes vary: zoom augmentation.
SIZE_SPREAD = 1.25
ZOOM_JITTER = 0.3
# Below this many validation images the validation AUROC is too coarse to stop early on.
SMALL_VALIDATION = 150
EARLY_STOP_PATIENCE = 20
MAX_EPOCHS = 1000  # the time budget decides
BLOCK = 16
MAX_IMAGES_MEASURED = 48
# Test-time flips when all the views of a typical image cost no more than one pass over a
# 1024x576 capture (the serving budget the phones set).
FLIPS_BUDGET_PIXELS = 1024 * 576


@dataclasses.dataclass(frozen=True)
class Choice:
    setting: str
    value: Any
    reason: str
    chosen: bool  # False: the user set it


def texture_direction(images: Sequence[np.ndarray]) -> dict[str, float]:
    """The coherence (0: no direction, 1: one grain direction) and angle (degrees, 0 =
    horizontal grain) of the fine texture of `images` (RGB uint8)."""
    tensors = []
    for image in images[:MAX_IMAGES_MEASURED]:
        gray = image.astype(np.float32).mean(axis=2)
        # Fine scale: the difference to a 3x3 box blur keeps grain and noise, not shading.
        padded = np.pad(gray, 1, mode="edge")
        blur = (
            sum(
                padded[dy : dy + gray.shape[0], dx : dx + gray.shape[1]]
                for dy in range(3)
                for dx in range(3)
            )
            / 9.0
        )
        fine = gray - blur
        gy, gx = np.gradient(fine)
        if min(gray.shape) < BLOCK:
            continue
        jxx, jyy, jxy = _block_means(gx * gx), _block_means(gy * gy), _block_means(gx * gy)
        energy = jxx + jyy
        keep = energy > 1e-6  # flat blocks (saturated, padded) say nothing
        if keep.any():
            tensors.append(np.stack([jxx[keep], jyy[keep], jxy[keep]], axis=1) / energy[keep, None])
    if not tensors:
        return {"coherence": 0.0, "angle_deg": 0.0}
    jxx, jyy, jxy = np.median(np.concatenate(tensors), axis=0)
    coherence = float(np.hypot(jxx - jyy, 2 * jxy) / max(jxx + jyy, 1e-9))
    # The gradient's main direction is across the grain; the grain lies at right angles.
    angle = float(np.degrees(0.5 * np.arctan2(2 * jxy, jxx - jyy)) + 90.0) % 180.0
    return {"coherence": round(coherence, 3), "angle_deg": round(angle, 1)}


def _block_means(values: np.ndarray) -> np.ndarray:
    rows, cols = values.shape[0] // BLOCK, values.shape[1] // BLOCK
    cut = values[: rows * BLOCK, : cols * BLOCK]
    return cut.reshape(rows, BLOCK, cols, BLOCK).mean(axis=(1, 3)).ravel()


def size_spread(samples: Sequence[Sample]) -> dict[str, float]:
    shorter = np.array([min(s.image.shape[:2]) for s in samples], dtype=float)
    p10, p50, p90 = np.percentile(shorter, [10, 50, 90])
    pixels = np.median([s.image.shape[0] * s.image.shape[1] for s in samples])
    return {
        "shorter_side_p10": float(p10),
        "shorter_side_median": float(p50),
        "shorter_side_p90": float(p90),
        "spread": round(float(p90 / max(p10, 1.0)), 3),
        "median_pixels": int(pixels),
    }


def defect_area(samples: Sequence[Sample]) -> dict[str, Any]:
    shares = [
        float(s.pixel_mask.mean()) for s in samples if s.label == 1 and s.pixel_mask is not None
    ]
    return {
        "defect_images": sum(1 for s in samples if s.label == 1),
        "with_masks": len(shares),
        "median_mask_share": round(float(np.median(shares)), 4) if shares else None,
        "p90_mask_share": round(float(np.percentile(shares, 90)), 4) if shares else None,
    }


def choose(
    config: Any, samples: Sequence[Sample], *, validation_count: int
) -> tuple[Any, dict[str, Any]]:
    """The config with every None setting chosen from the data, and the recipe: what was
    measured and, per setting, its value and why."""
    clean = [s.image for s in samples if s.label == 0]
    measured = {
        "texture": texture_direction(clean or [s.image for s in samples]),
        "sizes": size_spread(samples),
        "defects": defect_area(samples),
        "training_images": len(samples),
        "validation_images": validation_count,
    }
    choices: list[Choice] = []

    def pick(setting: str, value: Any, reason: str) -> None:
        given = getattr(config, setting)
        if given is not None:
            choices.append(Choice(setting, given, "set by the user", chosen=False))
        else:
            choices.append(Choice(setting, value, reason, chosen=True))

    texture = measured["texture"]
    if texture["coherence"] >= DIRECTION_COHERENCE:
        pick(
            "rotate",
            False,
            f"the surface has a grain direction (coherence {texture['coherence']:.2f} at "
            f"{texture['angle_deg']:.0f} deg): a quarter-turned crop shows a surface that "
            "never occurs; flips only",
        )
    else:
        pick(
            "rotate",
            True,
            f"no grain direction (coherence {texture['coherence']:.2f}): quarter turns and "
            "flips, defects may run any way",
        )
    sizes = measured["sizes"]
    if sizes["spread"] >= SIZE_SPREAD:
        pick(
            "scale_jitter",
            ZOOM_JITTER,
            f"image sizes vary (shorter side {sizes['shorter_side_p10']:.0f}-"
            f"{sizes['shorter_side_p90']:.0f} px): zoom augmentation +-{ZOOM_JITTER}",
        )
    else:
        pick(
            "scale_jitter",
            0.0,
            f"images are one size (shorter side ~{sizes['shorter_side_median']:.0f} px): no zoom",
        )
    if validation_count < SMALL_VALIDATION:
        pick(
            "patience",
            MAX_EPOCHS,
            f"{validation_count} validation images: their AUROC moves by chance from epoch to "
            "epoch, so no early stop; the time budget decides and the best epoch is kept",
        )
    else:
        pick(
            "patience",
            EARLY_STOP_PATIENCE,
            f"{validation_count} validation images: stop after {EARLY_STOP_PATIENCE} epochs "
            "without a better one",
        )
    pixels = sizes["median_pixels"]
    if pixels * len(FLIP_VIEWS) <= FLIPS_BUDGET_PIXELS:
        pick(
            "test_time_flips",
            True,
            f"images of ~{pixels / 1000:.0f} kpx: the image and its {len(FLIP_VIEWS) - 1} flips "
            "cost less than one 1024x576 capture, and their mean score ranks parts better "
            "(tiles' tuning splits: AUROC 0.971-0.998 -> 0.989-0.999)",
        )
    else:
        pick(
            "test_time_flips",
            False,
            f"images of ~{pixels / 1000:.0f} kpx: {len(FLIP_VIEWS)} passes would cost more than "
            "one 1024x576 capture; one pass",
        )
    pick("max_epochs", MAX_EPOCHS, "as many epochs as the time budget allows")
    values = {c.setting: c.value for c in choices}
    recipe = {
        "measured": measured,
        "choices": [dataclasses.asdict(c) for c in choices],
    }
    return dataclasses.replace(config, **values), recipe
