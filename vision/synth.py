"""Seeded synthetic phone photos with pixel-exact defect masks, for training, tests and demos.

The scene copies the real station photos (shared/datasets/msd_phone_screen_subset): a phone
lying landscape on a grey textured mat, a dark glossy screen filling about 70% of the frame,
black or white bezels with a speaker slot, cameras and a home button, soft reflections and
sensor noise. Defects (scratch, crack, stain) go in the mask; distractors a model must learn
to ignore (dust specks, smudges, reflection bands, bezel edges and features, mat texture) do
not.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vision.datasets import Item, write_manifest
from vision.images import encode_jpeg, encode_png

DEFECT_TYPES = ("scratch", "crack", "stain")
# Scratches are what the stations mostly catch; cracks and stains keep the model honest.
DEFECT_WEIGHTS = (0.6, 0.2, 0.2)
REFERENCE_WIDTH = 1024  # lengths below are in pixels of a 1024x576 photo, scaled to the size
SUPERSAMPLE = 4  # strokes are drawn 4x larger and averaged down: anti-aliased edges
MASK_COVERAGE = 0.25  # a pixel belongs to a defect when the defect covers a quarter of it
_TILE = 512  # side of the cached noise and texture tiles

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Lighting:
    """The light on the fixture: exposure, colour and a falloff across the frame."""

    brightness: float = 1.0  # multiplies every pixel
    temperature: float = 6500.0  # kelvin; 6500 is neutral, lower is warmer, higher bluer
    direction: float = 0.0  # degrees: the brighter side, 0 = right, 90 = top (anticlockwise)
    gradient: float = 0.2  # light falls off by this share from the bright side to the dark one

    def __post_init__(self) -> None:
        if not 0.05 <= self.brightness <= 5.0:
            raise ValueError(f"brightness must be in [0.05, 5], got {self.brightness}")
        if not 1500.0 <= self.temperature <= 20000.0:
            raise ValueError(f"temperature must be in [1500, 20000] K, got {self.temperature}")
        if not 0.0 <= self.gradient < 1.0:
            raise ValueError(f"gradient must be in [0, 1), got {self.gradient}")

    @classmethod
    def parse(cls, text: str) -> Lighting:
        """`"brightness=1.3,temperature=4000,direction=45"` -> Lighting; unnamed fields keep
        their defaults."""
        names = {f.name for f in fields(cls)}
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = (s.strip() for s in part.partition("="))
            if not sep or name not in names:
                raise ValueError(
                    f"bad lighting {part!r}: expected name=value with name in {sorted(names)}"
                )
            try:
                values[name] = float(value)
            except ValueError:
                raise ValueError(f"bad lighting {part!r}: {value!r} is not a number") from None
        return cls(**values)

    def channel_gains(self) -> np.ndarray:
        """Red, green, blue multipliers of this light against a 6500 K one, with the luma of
        the three kept at 1 so temperature changes colour, not exposure."""
        gains = _blackbody_rgb(self.temperature) / _blackbody_rgb(6500.0)
        return (gains / float(np.dot(gains, (0.299, 0.587, 0.114)))).astype(np.float32)


@dataclass(frozen=True)
class Defect:
    defect_type: str
    box: Box  # (x0, y0, x1, y1) of its mask pixels, ends exclusive
    width_px: float  # stroke width (scratch, crack) or diameter (stain) in pixels
    contrast: float  # added brightness at its brightest, as a share of 255


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
    if width < 32 or height < 18:
        raise ValueError(f"size must be at least 32x18, got {width}x{height}")
    if not 0.0 <= defect_rate <= 1.0:
        raise ValueError(f"defect_rate must be in [0, 1], got {defect_rate}")
    for name in defect_types or ():
        if name not in DEFECT_TYPES:
            raise ValueError(f"unknown defect type {name!r}; known: {', '.join(DEFECT_TYPES)}")
    rng = np.random.default_rng(seed)
    scene = _Scene(rng, width, height)
    if lighting is None:
        lighting = Lighting(
            brightness=float(rng.uniform(0.9, 1.1)),
            temperature=float(rng.uniform(5600, 7400)),
            direction=float(rng.uniform(0, 360)),
            gradient=float(rng.uniform(0.0, 0.25)),
        )
    if defect_types is None:
        count = rng.choice((1, 2, 3), p=(0.6, 0.3, 0.1)) if rng.random() < defect_rate else 0
        defect_types = list(rng.choice(DEFECT_TYPES, size=count, p=DEFECT_WEIGHTS))

    luma = scene.base_luma()
    scene.add_glass_and_mat(luma)
    scene.add_features(luma)
    scene.add_dust(luma)
    mask = np.zeros((height, width), bool)
    tints: list[tuple[slice, slice, np.ndarray]] = []
    defects = []
    for defect_type in defect_types:
        defect = scene.add_defect(str(defect_type), luma, mask, tints)
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


class _Scene:
    """The random layout of one photo and the drawing steps that use it.

    Geometry lives in the phone's own frame (u along its length, v across, origin at its
    centre) so the slight rotation of a real fixture costs nothing extra to draw.
    """

    def __init__(self, rng: np.random.Generator, width: int, height: int) -> None:
        self.rng = rng
        self.width, self.height = width, height
        self.scale = min(width / REFERENCE_WIDTH, height / 576)
        self.white = bool(rng.random() < 0.3)
        self.half_w = width * rng.uniform(0.42, 0.475)
        self.half_h = min(height * rng.uniform(0.39, 0.46), self.half_w * 0.52)
        self.cx = width / 2 + width * rng.uniform(-0.02, 0.02)
        self.cy = height / 2 + height * rng.uniform(-0.025, 0.025)
        angle = math.radians(rng.uniform(-2.0, 2.0))
        self.cos, self.sin = math.cos(angle), math.sin(angle)
        self.radius = self.half_h * rng.uniform(0.1, 0.22)
        self.camera_side = 1.0 if rng.random() < 0.5 else -1.0
        self.red_band: np.ndarray | None = None
        if self.white:
            self.screen_half_w = self.half_w * rng.uniform(0.78, 0.84)
            self.screen_half_h = self.half_h * rng.uniform(0.88, 0.93)
            self.screen_radius = self.half_h * 0.01
        else:
            self.screen_half_w = self.half_w * rng.uniform(0.85, 0.9)
            self.screen_half_h = self.half_h * rng.uniform(0.95, 0.98)
            self.screen_radius = self.radius * 0.6
        self.mat = float(rng.uniform(78, 112))
        if self.white:
            self.body = float(rng.uniform(212, 238))
            self.glass = float(rng.uniform(14, 28))
        else:
            # Black glass over a black bezel: the screen's outline is barely there.
            self.body = float(rng.uniform(10, 20))
            self.glass = self.body + float(rng.uniform(-1, 3))
        # Screens lean a little warm, the mat a little cool, white plastic a little warm.
        self.screen_tint = np.array(
            [rng.uniform(-1.0, 2.5), 0.0, rng.uniform(-3.0, 1.5)], np.float32
        )
        self.mat_tint = np.array([rng.uniform(-2.0, 1.0), 0.0, rng.uniform(0.0, 5.0)], np.float32)
        self.body_tint = (
            np.array([1.0, 0.0, -2.0], np.float32) if self.white else np.zeros(3, np.float32)
        )

    # Geometry -----------------------------------------------------------------------------

    def to_image(self, u: np.ndarray | float, v: np.ndarray | float) -> tuple:
        return (self.cx + u * self.cos - v * self.sin, self.cy + u * self.sin + v * self.cos)

    def screen_box(self) -> Box:
        corners_u = np.array([-1, 1, 1, -1]) * self.screen_half_w
        corners_v = np.array([-1, -1, 1, 1]) * self.screen_half_h
        xs, ys = self.to_image(corners_u, corners_v)
        return (
            max(0, int(math.floor(xs.min()))),
            max(0, int(math.floor(ys.min()))),
            min(self.width, int(math.ceil(xs.max()))),
            min(self.height, int(math.ceil(ys.max()))),
        )

    def base_luma(self) -> np.ndarray:
        """Mat, body and screen as one grey plane; keeps the alphas for colouring later."""
        xs = np.arange(self.width, dtype=np.float32) + 0.5 - self.cx
        ys = np.arange(self.height, dtype=np.float32)[:, None] + 0.5 - self.cy
        abs_u = np.abs(xs * self.cos + ys * self.sin)
        abs_v = np.abs(ys * self.cos - xs * self.sin)
        body_distance = self._distance(abs_u, abs_v, self.half_w, self.half_h, self.radius)
        self.body_alpha = np.clip(0.5 - body_distance, 0.0, 1.0)
        screen_distance = self._distance(
            abs_u, abs_v, self.screen_half_w, self.screen_half_h, self.screen_radius
        )
        self.screen_alpha = np.clip(0.5 - screen_distance, 0.0, 1.0)
        luma = self.mat + (self.body - self.mat) * self.body_alpha
        luma += (self.glass - self.body) * self.screen_alpha
        self._add_rim(luma, body_distance)
        return luma

    def _distance(
        self, abs_u: np.ndarray, abs_v: np.ndarray, half_w: float, half_h: float, radius: float
    ) -> np.ndarray:
        """Signed distance in pixels (negative inside) to a rounded rectangle of the phone's
        frame. max(qx, qy) is exact except near the four rounded corners, so only small
        patches there pay for the square root."""
        qx = abs_u - np.float32(half_w - radius)
        qy = abs_v - np.float32(half_h - radius)
        distance = np.maximum(qx, qy)
        distance -= np.float32(radius)
        reach = (radius + 2.0) * (abs(self.cos) + abs(self.sin)) + 1.0
        for su in (-1.0, 1.0):
            for sv in (-1.0, 1.0):
                x, y = self.to_image(su * (half_w - radius), sv * (half_h - radius))
                rows = slice(max(0, int(y - reach)), max(0, int(y + reach) + 1))
                cols = slice(max(0, int(x - reach)), max(0, int(x + reach) + 1))
                cx, cy = np.maximum(qx[rows, cols], 0.0), np.maximum(qy[rows, cols], 0.0)
                exact = np.sqrt(cx * cx + cy * cy) + np.minimum(
                    np.maximum(qx[rows, cols], qy[rows, cols]), 0.0
                )
                distance[rows, cols] = exact - np.float32(radius)
        return distance

    def _add_rim(self, luma: np.ndarray, body_distance: np.ndarray) -> None:
        """The phone's long edges catch the light as a thin glossy line that comes and goes
        along them (on white plastic: a faint shadow line). Only the two row bands the edges
        cross are touched."""
        rng = self.rng
        rim_width = max(0.8, 1.6 * self.scale)
        knots = rng.uniform(0.0, 1.0, 7) ** 2
        along = np.interp(np.linspace(0, 6, self.width), np.arange(7), knots).astype(np.float32)
        strength = rng.uniform(-25, -10) if self.white else rng.uniform(40, 130)
        slope = abs(self.sin) * self.width / 2 + 3 * rim_width + 2
        for sign in (-1.0, 1.0):
            _, y = self.to_image(0.0, sign * self.half_h)
            rows = slice(max(0, int(y - slope)), max(0, int(y + slope) + 1))
            band = body_distance[rows]
            rim = np.clip(1.0 - np.abs(band + 1.5 * rim_width) / rim_width, 0.0, 1.0)
            luma[rows] += rim * (along * np.float32(strength * rng.uniform(0.3, 1.0)))

    # Distractors --------------------------------------------------------------------------

    def add_glass_and_mat(self, luma: np.ndarray) -> None:
        """Low-frequency light: mat shading, reflection bands, the camera rig's reflection and
        smudges on the glass, drawn on a coarse grid and smoothly enlarged."""
        rng = self.rng
        small_w, small_h = max(8, self.width // 8), max(5, self.height // 8)
        gx = (np.arange(small_w, dtype=np.float32) + 0.5) / small_w * self.width - self.cx
        gy = (np.arange(small_h, dtype=np.float32)[:, None] + 0.5) / small_h * self.height - self.cy
        u = gx * self.cos + gy * self.sin
        v = gy * self.cos - gx * self.sin
        mat = rng.normal(0, 3.0, (4, 6)).astype(np.float32)
        glass = np.zeros((small_h, small_w), np.float32)
        for _ in range(rng.integers(1, 4)):
            # Broad soft diagonal bands: wide and low, never a line a model could mistake.
            angle = rng.uniform(0, math.pi)
            along = u * math.cos(angle) + v * math.sin(angle)
            centre = rng.uniform(-0.7, 0.7) * self.half_w
            spread = rng.uniform(0.08, 0.3) * self.width
            glass += rng.uniform(2.0, 9.0) * np.exp(-(((along - centre) / spread) ** 2))
        # The camera and its stand mirrored in the glass: a soft rectangle near the middle.
        rig_u, rig_v = rng.uniform(-0.3, 0.3) * self.half_w, rng.uniform(-0.3, 0.3) * self.half_h
        rig_w, rig_h = rng.uniform(0.08, 0.16) * self.width, rng.uniform(0.12, 0.3) * self.height
        rig = _soft_box(u - rig_u, rig_w) * _soft_box(v - rig_v, rig_h)
        glass += rng.uniform(-6.0, 5.0) * rig
        for _ in range(rng.integers(0, 4)):
            # Smudges: big faint blobs with no edge at all.
            su, sv = (
                rng.uniform(-1, 1) * self.screen_half_w,
                rng.uniform(-1, 1) * self.screen_half_h,
            )
            sigma_u = rng.uniform(0.04, 0.12) * self.width
            sigma_v = rng.uniform(0.04, 0.12) * self.width
            glass += rng.uniform(1.5, 5.0) * np.exp(
                -(((u - su) / sigma_u) ** 2) - ((v - sv) / sigma_v) ** 2
            )
        glass_full = _enlarge(glass, self.width, self.height)
        mat_full = _enlarge(mat, self.width, self.height)
        mat_full += _tiled(_smooth_noise(7), self.height, self.width, rng) * np.float32(
            rng.uniform(1.5, 3.5)
        )
        # Reflections show on dark glass: the whole front of a black phone, the screen of a
        # white one.
        glass_alpha = self.screen_alpha if self.white else self.body_alpha
        luma += glass_full * glass_alpha
        luma += mat_full * (1.0 - self.body_alpha)
        if not self.white and rng.random() < 0.3:
            # Something red beside the line, mirrored as a faint vertical band on the glass.
            band_u = rng.uniform(-0.6, 0.6) * self.half_w
            band = np.exp(-(((u - band_u - 0.3 * v) / (0.03 * self.width)) ** 2)) * 10.0
            self.red_band = _enlarge(band.astype(np.float32), self.width, self.height)
            self.red_band *= self.body_alpha

    def add_features(self, luma: np.ndarray) -> None:
        """Speaker slot, cameras and home button at the phone's ends: sharp, but not defects."""
        rng, s = self.rng, self.scale
        side = self.camera_side
        end_inner, end_outer = self.screen_half_w, self.half_w
        middle = (end_inner + end_outer) / 2
        gap = end_outer - end_inner
        box = self._end_box(side)
        patch = _Patch(box, self.width, self.height)
        slot_len = self.half_h * rng.uniform(0.18, 0.32)
        slot_w = max(1.5, gap * 0.09)
        patch.polygon(self._rect_points(side * middle, 0.0, slot_w / 2, slot_len / 2), fill=255)
        for offset in sorted(rng.choice([-1.0, 1.0], size=rng.integers(1, 3), replace=False)):
            cam_u = side * (middle + rng.uniform(-0.1, 0.1) * gap)
            cam_v = offset * self.half_h * rng.uniform(0.45, 0.6)
            radius = max(1.0, gap * rng.uniform(0.07, 0.14))
            patch.circle(
                *self.to_image(cam_u, cam_v), radius, fill=255, outline_only=not self.white
            )
        strength = -rng.uniform(70, 140) if self.white else rng.uniform(18, 40)
        patch.add_to(luma, strength)

        if rng.random() < 0.7:
            other = _Patch(self._end_box(-side), self.width, self.height)
            u0 = -side * middle
            if self.white:
                other.circle(
                    *self.to_image(u0, 0.0), max(1.0, gap * 0.18), fill=255, outline_only=True
                )
            else:
                points = self._rect_points(u0, 0.0, gap * 0.22, self.half_h * 0.1)
                other.polygon(points, fill=None, outline=255, width=max(1, round(2 * s)))
            other.add_to(luma, -rng.uniform(40, 80) if self.white else rng.uniform(20, 45))

    def add_dust(self, luma: np.ndarray) -> None:
        """Dust specks: single pixels or 2x2 dots, point-like so they never look like a line."""
        rng = self.rng
        count = int(rng.integers(3, 40) * max(self.scale, 0.25))
        u = rng.uniform(-1, 1, count) * self.screen_half_w
        v = rng.uniform(-1, 1, count) * self.screen_half_h
        xs, ys = self.to_image(u, v)
        xs = np.clip(xs.astype(int), 0, self.width - 2)
        ys = np.clip(ys.astype(int), 0, self.height - 2)
        values = rng.uniform(6, 45, count).astype(np.float32)
        luma[ys, xs] += values
        big = rng.random(count) < 0.3 * min(1.0, self.scale * 2)
        for dy, dx in ((0, 1), (1, 0), (1, 1)):
            luma[ys[big] + dy, xs[big] + dx] += values[big] * 0.6

    # Defects ------------------------------------------------------------------------------

    def add_defect(
        self,
        defect_type: str,
        luma: np.ndarray,
        mask: np.ndarray,
        tints: list[tuple[slice, slice, np.ndarray]],
    ) -> Defect | None:
        draw = {"scratch": self._scratch, "crack": self._crack, "stain": self._stain}[defect_type]
        for _ in range(5):  # a defect clipped away at the screen's edge is drawn again
            patch, width_px, contrast, tint = draw()
            coverage = patch.coverage() * self.screen_alpha[patch.rows, patch.cols]
            defect_mask = coverage >= MASK_COVERAGE
            if defect_mask.any():
                break
        else:
            return None
        luma[patch.rows, patch.cols] += coverage * np.float32(contrast * 255.0)
        mask[patch.rows, patch.cols] |= defect_mask
        if tint is not None:
            tints.append((patch.rows, patch.cols, coverage[..., None] * tint))
        ys, xs = np.nonzero(defect_mask)
        box = (
            patch.left + int(xs.min()),
            patch.top + int(ys.min()),
            patch.left + int(xs.max()) + 1,
            patch.top + int(ys.max()) + 1,
        )
        return Defect(defect_type, box, round(float(width_px), 2), round(float(contrast), 3))

    def _contrast(self, low: float, high: float) -> float:
        # A quarter are faint: a careful inspector sees them, a careless model does not.
        if self.rng.random() < 0.25:
            return float(self.rng.uniform(low * 0.5, low))
        return float(self.rng.uniform(low, high))

    def _screen_point(self, margin: float) -> tuple[float, float]:
        u = self.rng.uniform(-1, 1) * max(self.screen_half_w - margin, 1.0)
        v = self.rng.uniform(-1, 1) * max(self.screen_half_h - margin, 1.0)
        return float(u), float(v)

    def _scratch(self) -> tuple[_Patch, float, float, None]:
        rng, s = self.rng, self.scale
        length = max(6.0, math.exp(rng.uniform(math.log(20), math.log(300))) * s)
        width_px = max(
            1.0, rng.choice([rng.uniform(1.0, 2.0), rng.uniform(2.0, 4.0)], p=[0.7, 0.3]) * s
        )
        u0, v0 = self._screen_point(margin=2 * width_px)
        angle = rng.uniform(0, 2 * math.pi)
        # Keep the far end on the screen by shortening the scratch, not by bending it back.
        limit_u = self.screen_half_w - 2 * width_px
        limit_v = self.screen_half_h - 2 * width_px

        def room_along(du: float, dv: float) -> float:
            return min(
                (limit_u - u0 * math.copysign(1, du)) / max(abs(du), 1e-6),
                (limit_v - v0 * math.copysign(1, dv)) / max(abs(dv), 1e-6),
            )

        du, dv = math.cos(angle), math.sin(angle)
        room = room_along(du, dv)
        if room < length and room_along(-du, -dv) > room:
            # Started near an edge and heading off the screen: scratch the other way rather
            # than leave a stub of a few pixels that no inspector would call a scratch.
            du, dv = -du, -dv
            room = room_along(du, dv)
        length = max(3.0, min(length, room))
        u2, v2 = u0 + du * length, v0 + dv * length
        bend = rng.uniform(-0.25, 0.25) * length
        u1, v1 = (u0 + u2) / 2 - dv * bend, (v0 + v2) / 2 + du * bend
        t = np.linspace(0.0, 1.0, max(6, int(length / (4 * max(s, 0.25)))))
        u = (1 - t) ** 2 * u0 + 2 * (1 - t) * t * u1 + t**2 * u2
        v = (1 - t) ** 2 * v0 + 2 * (1 - t) * t * v1 + t**2 * v2
        xs, ys = self.to_image(u, v)
        patch = _Patch.around(xs, ys, width_px + 2, self.width, self.height)
        # Brighter in the middle, fading at the ends, with the flicker of a real groove.
        profile = (0.55 + 0.45 * np.sin(np.pi * t)) * rng.uniform(0.75, 1.0, t.size)
        patch.polyline(xs, ys, width_px, values=profile)
        return patch, width_px, self._contrast(0.2, 0.8), None

    def _crack(self) -> tuple[_Patch, float, float, None]:
        rng, s = self.rng, self.scale
        width_px = max(1.0, rng.uniform(1.0, 2.0) * s)
        step = max(2.0, rng.uniform(5, 12) * s)
        u0, v0 = self._screen_point(margin=0.2 * self.screen_half_h)
        branches = []
        for _ in range(rng.integers(2, 5)):
            branches.append(
                self._jagged(u0, v0, rng.uniform(0, 2 * math.pi), step, rng.uniform(30, 160) * s)
            )
            if rng.random() < 0.5:
                # A side branch from a random knee of the one just drawn.
                bu, bv = branches[-1]
                k = rng.integers(0, len(bu))
                branches.append(
                    self._jagged(
                        bu[k], bv[k], rng.uniform(0, 2 * math.pi), step, rng.uniform(15, 60) * s
                    )
                )
        points = [self.to_image(bu, bv) for bu, bv in branches]
        all_x = np.concatenate([p[0] for p in points])
        all_y = np.concatenate([p[1] for p in points])
        patch = _Patch.around(all_x, all_y, width_px + 4 * max(s, 0.25), self.width, self.height)
        for xs, ys in points:
            patch.polyline(xs, ys, width_px, values=rng.uniform(0.6, 1.0, xs.size))
        patch.circle(*self.to_image(u0, v0), max(1.0, 2.5 * s), fill=255)
        return patch, width_px, self._contrast(0.25, 0.7), None

    def _jagged(
        self, u: float, v: float, angle: float, step: float, length: float
    ) -> tuple[np.ndarray, np.ndarray]:
        steps = max(2, int(length / step))
        angles = angle + np.cumsum(self.rng.uniform(-0.35, 0.35, steps))
        us = u + np.concatenate([[0.0], np.cumsum(np.cos(angles) * step)])
        vs = v + np.concatenate([[0.0], np.cumsum(np.sin(angles) * step)])
        return (
            np.clip(us, -self.screen_half_w, self.screen_half_w),
            np.clip(vs, -self.screen_half_h, self.screen_half_h),
        )

    def _stain(self) -> tuple[_Patch, float, float, np.ndarray]:
        rng, s = self.rng, self.scale
        radius = max(2.0, rng.uniform(5, 32) * s)
        u0, v0 = self._screen_point(margin=radius)
        cx, cy = self.to_image(u0, v0)
        patch = _Patch.around(
            np.array([cx - radius * 1.4, cx + radius * 1.4]),
            np.array([cy - radius * 1.4, cy + radius * 1.4]),
            1.0,
            self.width,
            self.height,
            supersample=1,
        )
        ys = np.arange(patch.top, patch.bottom, dtype=np.float32)[:, None] + 0.5 - cy
        xs = np.arange(patch.left, patch.right, dtype=np.float32) + 0.5 - cx
        rho = np.sqrt(xs * xs + ys * ys)
        theta = np.arctan2(ys, xs)
        # An irregular outline: a circle wobbled by a few low harmonics.
        edge = np.full_like(rho, radius)
        for harmonic in (2, 3, 5):
            edge += (
                radius
                * rng.uniform(0.0, 0.12)
                * np.sin(harmonic * theta + rng.uniform(0, 2 * math.pi))
            )
        inside = np.clip((edge - rho) / max(1.0, 0.2 * radius) + 0.5, 0.0, 1.0)
        # Oil films are brighter at the rim, where the liquid's edge catches the light.
        brightness = inside * (0.55 + 0.45 * np.clip(rho / edge, 0, 1) ** 3)
        patch.set_coverage(brightness.astype(np.float32))
        # Thin-film iridescence: the colour turns with distance from the middle.
        phase = rho / edge * rng.uniform(2.0, 5.0) + rng.uniform(0, 2 * math.pi)
        tint = np.stack([np.sin(phase), np.sin(phase + 2.1), np.sin(phase + 4.2)], axis=-1).astype(
            np.float32
        ) * np.float32(rng.uniform(4, 12))
        return patch, 2 * radius, self._contrast(0.08, 0.22), tint

    # Finishing ----------------------------------------------------------------------------

    def finish(
        self,
        luma: np.ndarray,
        lighting: Lighting,
        tints: list[tuple[slice, slice, np.ndarray]],
    ) -> np.ndarray:
        """Colour, light, sensor noise and 8 bits."""
        rng = self.rng
        rows = np.arange(self.height, dtype=np.float32)[:, None] - self.height / 2
        cols = np.arange(self.width, dtype=np.float32) - self.width / 2
        theta = math.radians(lighting.direction)
        reach = (self.width * abs(math.cos(theta)) + self.height * abs(math.sin(theta))) / 2
        slope = lighting.gradient / 2 / reach
        light = (cols * np.float32(math.cos(theta) * slope) + 1.0) - rows * np.float32(
            math.sin(theta) * slope
        )
        light *= np.float32(lighting.brightness)
        # Sensor noise after demosaicing and JPEG is soft grain, not independent pixels.
        noise = _tiled(_smooth_noise(20240611), self.height, self.width, rng)
        noise *= np.float32(rng.uniform(0.6, 1.6))
        # Tints are small colour offsets of each region; one plane each, added per channel.
        screen = self.screen_alpha
        body_only = self.body_alpha - screen
        mat_only = 1.0 - self.body_alpha
        gains = lighting.channel_gains()
        out = np.empty((self.height, self.width, 3), np.uint8)
        for channel in range(3):
            plane = luma + self.screen_tint[channel] * screen
            if self.mat_tint[channel]:
                plane += self.mat_tint[channel] * mat_only
            if self.body_tint[channel]:
                plane += self.body_tint[channel] * body_only
            if channel == 0 and self.red_band is not None:
                plane += self.red_band
            for rows_slice, cols_slice, tint in tints:
                plane[rows_slice, cols_slice] += tint[..., channel]
            plane *= light
            plane *= gains[channel]
            plane += noise
            np.clip(plane, 0, 255, out=plane)
            out[..., channel] = plane
        return out

    def _end_box(self, side: float) -> Box:
        u = np.array([self.screen_half_w, self.half_w]) * side
        us = np.concatenate([u, u])
        vs = np.array([-1, -1, 1, 1]) * self.half_h
        xs, ys = self.to_image(us, vs)
        return (int(xs.min()) - 2, int(ys.min()) - 2, int(xs.max()) + 3, int(ys.max()) + 3)

    def _rect_points(
        self, u: float, v: float, half_u: float, half_v: float
    ) -> list[tuple[float, float]]:
        """Corners of a small pill-shaped rectangle, rotated with the phone."""
        radius = min(half_u, half_v)
        angles = np.linspace(0, math.pi / 2, 5)
        corners_u, corners_v = [], []
        for (su, sv), start in (
            ((1, 1), 0.0),
            ((-1, 1), math.pi / 2),
            ((-1, -1), math.pi),
            ((1, -1), 1.5 * math.pi),
        ):
            corners_u += list(u + su * (half_u - radius) + radius * np.cos(start + angles))
            corners_v += list(v + sv * (half_v - radius) + radius * np.sin(start + angles))
        xs, ys = self.to_image(np.array(corners_u), np.array(corners_v))
        return list(zip(xs.tolist(), ys.tolist(), strict=True))


class _Patch:
    """A small supersampled drawing surface over one rectangle of the image: strokes drawn on it
    come out anti-aliased without ever touching the full frame."""

    def __init__(self, box: Box, width: int, height: int, supersample: int = SUPERSAMPLE) -> None:
        self.left, self.top = max(0, box[0]), max(0, box[1])
        self.right, self.bottom = min(width, box[2]), min(height, box[3])
        self.right, self.bottom = max(self.right, self.left + 1), max(self.bottom, self.top + 1)
        self.left, self.top = min(self.left, width - 1), min(self.top, height - 1)
        self.right, self.bottom = max(self.right, self.left + 1), max(self.bottom, self.top + 1)
        self.supersample = supersample
        self.canvas = Image.new(
            "L", ((self.right - self.left) * supersample, (self.bottom - self.top) * supersample)
        )
        self.draw = ImageDraw.Draw(self.canvas)
        self._coverage: np.ndarray | None = None

    @classmethod
    def around(
        cls,
        xs: np.ndarray,
        ys: np.ndarray,
        pad: float,
        width: int,
        height: int,
        supersample: int = SUPERSAMPLE,
    ) -> _Patch:
        box = (
            int(math.floor(xs.min() - pad)),
            int(math.floor(ys.min() - pad)),
            int(math.ceil(xs.max() + pad)) + 1,
            int(math.ceil(ys.max() + pad)) + 1,
        )
        return cls(box, width, height, supersample)

    @property
    def rows(self) -> slice:
        return slice(self.top, self.bottom)

    @property
    def cols(self) -> slice:
        return slice(self.left, self.right)

    def _xy(self, x: float, y: float) -> tuple[float, float]:
        return ((x - self.left) * self.supersample, (y - self.top) * self.supersample)

    def polyline(self, xs: np.ndarray, ys: np.ndarray, width_px: float, values: np.ndarray) -> None:
        width = max(1, round(width_px * self.supersample))
        points = [self._xy(x, y) for x, y in zip(xs.tolist(), ys.tolist(), strict=True)]
        for index in range(len(points) - 1):
            fill = int(255 * min(1.0, float(values[index])))
            self.draw.line(
                [points[index], points[index + 1]], fill=fill, width=width, joint="curve"
            )

    def polygon(
        self,
        points: list[tuple[float, float]],
        fill: int | None,
        outline: int | None = None,
        width: int = 1,
    ) -> None:
        self.draw.polygon(
            [self._xy(x, y) for x, y in points],
            fill=fill,
            outline=outline,
            width=width * self.supersample,
        )

    def circle(
        self, x: float, y: float, radius: float, fill: int = 255, outline_only: bool = False
    ) -> None:
        cx, cy = self._xy(x, y)
        r = radius * self.supersample
        if outline_only:
            self.draw.ellipse(
                (cx - r, cy - r, cx + r, cy + r), outline=fill, width=max(1, self.supersample)
            )
        else:
            self.draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)

    def set_coverage(self, coverage: np.ndarray) -> None:
        self._coverage = coverage

    def coverage(self) -> np.ndarray:
        if self._coverage is None:
            reduced = self.canvas.reduce(self.supersample) if self.supersample > 1 else self.canvas
            self._coverage = np.asarray(reduced, dtype=np.float32) / 255.0
        return self._coverage

    def add_to(self, luma: np.ndarray, strength: float) -> None:
        luma[self.rows, self.cols] += self.coverage() * np.float32(strength)


def _soft_box(offset: np.ndarray, size: float) -> np.ndarray:
    return 1.0 / (1.0 + (np.abs(offset) / (size / 2)) ** 6)


def _enlarge(field: np.ndarray, width: int, height: int) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(field, dtype=np.float32), mode="F")
    return np.asarray(
        image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32
    ).copy()


def _tiled(tile: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A (height, width) window of a cached tile, shifted and flipped per photo: fresh-looking
    noise for a copy instead of millions of random draws."""
    oy, ox = rng.integers(0, tile.shape[0]), rng.integers(0, tile.shape[1])
    shifted = np.roll(tile, (int(oy), int(ox)), axis=(0, 1))
    if rng.random() < 0.5:
        shifted = shifted[::-1]
    if rng.random() < 0.5:
        shifted = shifted[:, ::-1]
    reps = (math.ceil(height / tile.shape[0]), math.ceil(width / tile.shape[1]))
    if reps != (1, 1):
        shifted = np.tile(shifted, reps)
    return np.ascontiguousarray(shifted[:height, :width])


@functools.cache
def _smooth_noise(seed: int) -> np.ndarray:
    """A tile of noise smoothed over 2x2 pixels, scaled back to unit std; it wraps around."""
    grain = np.random.default_rng(seed).standard_normal((_TILE, _TILE), dtype=np.float32)
    smooth = grain + np.roll(grain, 1, 0)
    smooth += np.roll(smooth, 1, 1)
    return (smooth / smooth.std()).astype(np.float32)


def _blackbody_rgb(kelvin: float) -> np.ndarray:
    """Approximate sRGB colour of a black body (Tanner Helland's fit to Mitchell Charity's
    table), good enough for a light that is too warm or too cold."""
    t = kelvin / 100.0
    red = 255.0 if t <= 66 else 329.698727446 * (t - 60) ** -0.1332047592
    green = (
        99.4708025861 * math.log(t) - 161.1195681661
        if t <= 66
        else 288.1221695283 * (t - 60) ** -0.0755148492
    )
    if t >= 66:
        blue = 255.0
    elif t <= 19:
        blue = 0.0
    else:
        blue = 138.5177312231 * math.log(t - 10) - 305.0447927307
    return np.clip(np.array([red, green, blue], np.float64), 1.0, 255.0)
