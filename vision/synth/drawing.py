"""Anti-aliased drawing patches and cached noise tiles that the synthetic scene is drawn with."""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image, ImageDraw

SUPERSAMPLE = 4  # strokes are drawn 4x larger and averaged down: anti-aliased edges
_TILE = 512  # side of the cached noise and texture tiles

Box = tuple[int, int, int, int]


class Patch:
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
    ) -> Patch:
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


def soft_box(offset: np.ndarray, size: float) -> np.ndarray:
    return 1.0 / (1.0 + (np.abs(offset) / (size / 2)) ** 6)


def enlarge(field: np.ndarray, width: int, height: int) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(field, dtype=np.float32), mode="F")
    return np.asarray(
        image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32
    ).copy()


def tiled(tile: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
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
def smooth_noise(seed: int) -> np.ndarray:
    """A tile of noise smoothed over 2x2 pixels, scaled back to unit std; it wraps around."""
    grain = np.random.default_rng(seed).standard_normal((_TILE, _TILE), dtype=np.float32)
    smooth = grain + np.roll(grain, 1, 0)
    smooth += np.roll(smooth, 1, 1)
    return (smooth / smooth.std()).astype(np.float32)
