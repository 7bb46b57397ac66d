"""Synthetic phones: one photo with its mask and defects, and seeded sets in memory or on disk."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vision.datasets import Item, write_manifest
from vision.images import encode_jpeg, encode_png
from vision.synth.defects import DEFECT_TYPES, DEFECT_WEIGHTS, Defect, add_defect
from vision.synth.distractors import add_dust, add_features, add_glass_and_mat
from vision.synth.drawing import Box
from vision.synth.lighting import Lighting
from vision.synth.scene import Scene, Tints


@dataclass(frozen=True, eq=False)
class SynthPhone:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    mask: np.ndarray  # bool (H, W): True on defect pixels
    defects: tuple[Defect, ...]
    label: str  # "defect" when there is at least one defect, else "ok"
    seed: int
    screen: Box  # bounding box of the screen, where defects can be


def synth_phone(
    *,
    seed: int,
    size: tuple[int, int] = (1024, 576),
    defect_types: Sequence[str] | None = None,
    defect_rate: float = 0.5,
    lighting: Lighting | None = None,
) -> SynthPhone:
    """One synthetic phone photo of `size` (W, H); the same arguments give the same pixels.

    `defect_types=None`: with probability `defect_rate` the phone gets 1-3 defects of random
    types (mostly scratches); `[]`: a clean phone; `["scratch", "crack"]`: exactly those.
    `lighting=None` draws a mild random light from the seed.
    """
    width, height = size
    _check_arguments(width, height, defect_rate, defect_types)
    rng = np.random.default_rng(seed)
    # The draws happen in this order (layout, light, defects, drawing) for every seed: moving
    # one would change every phone ever generated.
    scene = Scene(rng, width, height)
    if lighting is None:
        lighting = _random_lighting(rng)
    if defect_types is None:
        defect_types = _random_defect_types(rng, defect_rate)

    luma = scene.base_luma()
    add_glass_and_mat(scene, luma)
    add_features(scene, luma)
    add_dust(scene, luma)
    mask = np.zeros((height, width), bool)
    tints: Tints = []
    defects = []
    for defect_type in defect_types:
        defect = add_defect(scene, str(defect_type), luma, mask, tints)
        if defect is not None:
            defects.append(defect)
    image = scene.finish(luma, lighting, tints)
    return SynthPhone(
        image=image,
        mask=mask,
        defects=tuple(defects),
        label="defect" if defects else "ok",
        seed=seed,
        screen=scene.screen_box(),
    )


def _check_arguments(
    width: int, height: int, defect_rate: float, defect_types: Sequence[str] | None
) -> None:
    if width < 32 or height < 18:
        raise ValueError(f"size must be at least 32x18, got {width}x{height}")
    if not 0.0 <= defect_rate <= 1.0:
        raise ValueError(f"defect_rate must be in [0, 1], got {defect_rate}")
    for name in defect_types or ():
        if name not in DEFECT_TYPES:
            raise ValueError(f"unknown defect type {name!r}; known: {', '.join(DEFECT_TYPES)}")


def _random_lighting(rng: np.random.Generator) -> Lighting:
    """A mild light: what a station's fixture varies by from photo to photo."""
    return Lighting(
        brightness=float(rng.uniform(0.9, 1.1)),
        temperature=float(rng.uniform(5600, 7400)),
        direction=float(rng.uniform(0, 360)),
        gradient=float(rng.uniform(0.0, 0.25)),
    )


def _random_defect_types(rng: np.random.Generator, defect_rate: float) -> list[str]:
    """With probability `defect_rate` 1-3 types (mostly scratches), else none."""
    count = rng.choice((1, 2, 3), p=(0.6, 0.3, 0.1)) if rng.random() < defect_rate else 0
    return list(rng.choice(DEFECT_TYPES, size=count, p=DEFECT_WEIGHTS))


def synth_items(
    count: int,
    *,
    seed: int,
    size: tuple[int, int] = (1024, 576),
    defect_rate: float = 0.5,
    lighting: Lighting | None = None,
    defect_types: Sequence[str] | None = None,
) -> list[Item]:
    """`count` in-memory Items of synthetic phones; item i uses a seed derived from (seed, i),
    so a longer list starts with the same phones."""
    items = []
    for index in range(count):
        phone = synth_phone(
            seed=item_seed(seed, index),
            size=size,
            defect_types=defect_types,
            defect_rate=defect_rate,
            lighting=lighting,
        )
        items.append(_item(phone, group=f"synth-{seed}-{index}"))
    return items


def write_dataset(
    out_dir: str | Path,
    count: int,
    *,
    seed: int,
    size: tuple[int, int] = (1024, 576),
    defect_rate: float = 0.5,
    lighting: Lighting | None = None,
    defect_types: Sequence[str] | None = None,
) -> Path:
    """Write images/*.jpg, masks/*.png (all-zero for good phones: their truth is known too)
    and manifest.csv for the same phones as synth_items; returns the manifest's path."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    items = []
    for index in range(count):
        phone = synth_phone(
            seed=item_seed(seed, index),
            size=size,
            defect_types=defect_types,
            defect_rate=defect_rate,
            lighting=lighting,
        )
        image_path = out_dir / "images" / f"synth-{seed}-{index:05d}.jpg"
        mask_path = out_dir / "masks" / f"synth-{seed}-{index:05d}.png"
        image_path.write_bytes(encode_jpeg(phone.image, quality=92))
        mask_path.write_bytes(encode_png(phone.mask))
        item = _item(phone, group=f"synth-{seed}-{index}")
        items.append(
            Item(
                label=item.label,
                path=image_path,
                defect_type=item.defect_type,
                mask_path=mask_path,
                boxes=item.boxes,
                group=item.group,
            )
        )
    return write_manifest(items, out_dir / "manifest.csv")


def item_seed(seed: int, index: int) -> int:
    """The seed of item `index` of a synthetic set: independent streams, stable forever."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def contact_sheet(
    images: Sequence[np.ndarray], columns: int = 4, thumb_width: int = 256
) -> np.ndarray:
    """The images side by side, `columns` to a row, each scaled to `thumb_width`: for people
    to judge the synthetic data at a glance."""
    if not images:
        raise ValueError("no images for the contact sheet")
    thumbs = []
    for image in images:
        height = round(image.shape[0] * thumb_width / image.shape[1])
        thumbs.append(
            np.asarray(
                Image.fromarray(image).resize((thumb_width, height), Image.Resampling.BILINEAR)
            )
        )
    cell_h = max(t.shape[0] for t in thumbs) + 4
    rows = math.ceil(len(thumbs) / columns)
    sheet = np.full((rows * cell_h, columns * (thumb_width + 4), 3), 255, np.uint8)
    for index, thumb in enumerate(thumbs):
        top, left = (index // columns) * cell_h + 2, (index % columns) * (thumb_width + 4) + 2
        sheet[top : top + thumb.shape[0], left : left + thumb_width] = thumb
    return sheet


def _item(phone: SynthPhone, *, group: str) -> Item:
    return Item(
        label=phone.label,
        defect_type=phone.defects[0].defect_type if phone.defects else "",
        boxes=tuple(defect.box for defect in phone.defects),
        image=phone.image,
        mask=phone.mask,
        group=group,
    )
