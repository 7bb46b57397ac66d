"""The random layout of one synthetic photo: phone geometry, its grey planes and the finishing."""

from __future__ import annotations

import math

import numpy as np

from vision.synth.drawing import Box, smooth_noise, tiled
from vision.synth.lighting import Lighting

REFERENCE_WIDTH = 1024  # lengths below are in pixels of a 1024x576 photo, scaled to the size

# Colour offsets of small regions (stain iridescence): rows, columns and an (h, w, 3) tint.
Tints = list[tuple[slice, slice, np.ndarray]]


class Scene:
    """The random layout of one photo, its grey base and its finishing (colour, light,
    noise); distractors.py and defects.py draw on it in between.

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

    def finish(
        self,
        luma: np.ndarray,
        lighting: Lighting,
        tints: Tints,
    ) -> np.ndarray:
        """Colour, light, sensor noise and 8 bits."""
        rng = self.rng
        light = self._light_falloff(lighting)
        # Sensor noise after demosaicing and JPEG is soft grain, not independent pixels.
        noise = tiled(smooth_noise(20240611), self.height, self.width, rng)
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

    def _light_falloff(self, lighting: Lighting) -> np.ndarray:
        """(H, W) multiplier of the light: `gradient` falloff away from `direction`, times the
        brightness."""
        rows = np.arange(self.height, dtype=np.float32)[:, None] - self.height / 2
        cols = np.arange(self.width, dtype=np.float32) - self.width / 2
        theta = math.radians(lighting.direction)
        reach = (self.width * abs(math.cos(theta)) + self.height * abs(math.sin(theta))) / 2
        slope = lighting.gradient / 2 / reach
        light = (cols * np.float32(math.cos(theta) * slope) + 1.0) - rows * np.float32(
            math.sin(theta) * slope
        )
        light *= np.float32(lighting.brightness)
        return light
