"""What a model must learn to ignore: mat texture, reflections, smudges, bezel features, dust."""

from __future__ import annotations

import math

import numpy as np

from vision.synth.drawing import Box, Patch, enlarge, smooth_noise, soft_box, tiled
from vision.synth.scene import Scene


def add_glass_and_mat(scene: Scene, luma: np.ndarray) -> None:
    """Low-frequency light: mat shading, reflection bands, the camera rig's reflection and
    smudges on the glass, drawn on a coarse grid and smoothly enlarged."""
    rng = scene.rng
    small_w, small_h = max(8, scene.width // 8), max(5, scene.height // 8)
    gx = (np.arange(small_w, dtype=np.float32) + 0.5) / small_w * scene.width - scene.cx
    gy = (np.arange(small_h, dtype=np.float32)[:, None] + 0.5) / small_h * scene.height - scene.cy
    u = gx * scene.cos + gy * scene.sin
    v = gy * scene.cos - gx * scene.sin
    mat = rng.normal(0, 3.0, (4, 6)).astype(np.float32)
    glass = _glass_reflections(scene, u, v)
    glass_full = enlarge(glass, scene.width, scene.height)
    mat_full = enlarge(mat, scene.width, scene.height)
    mat_full += tiled(smooth_noise(7), scene.height, scene.width, rng) * np.float32(
        rng.uniform(1.5, 3.5)
    )
    # Reflections show on dark glass: the whole front of a black phone, the screen of a
    # white one.
    glass_alpha = scene.screen_alpha if scene.white else scene.body_alpha
    luma += glass_full * glass_alpha
    luma += mat_full * (1.0 - scene.body_alpha)
    if not scene.white and rng.random() < 0.3:
        # Something red beside the line, mirrored as a faint vertical band on the glass.
        band_u = rng.uniform(-0.6, 0.6) * scene.half_w
        band = np.exp(-(((u - band_u - 0.3 * v) / (0.03 * scene.width)) ** 2)) * 10.0
        scene.red_band = enlarge(band.astype(np.float32), scene.width, scene.height)
        scene.red_band *= scene.body_alpha


def _glass_reflections(scene: Scene, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Reflection bands, the camera rig and smudges on the coarse grid (u, v)."""
    rng = scene.rng
    glass = np.zeros(u.shape, np.float32)
    for _ in range(rng.integers(1, 4)):
        # Broad soft diagonal bands: wide and low, never a line a model could mistake.
        angle = rng.uniform(0, math.pi)
        along = u * math.cos(angle) + v * math.sin(angle)
        centre = rng.uniform(-0.7, 0.7) * scene.half_w
        spread = rng.uniform(0.08, 0.3) * scene.width
        glass += rng.uniform(2.0, 9.0) * np.exp(-(((along - centre) / spread) ** 2))
    # The camera and its stand mirrored in the glass: a soft rectangle near the middle.
    rig_u, rig_v = rng.uniform(-0.3, 0.3) * scene.half_w, rng.uniform(-0.3, 0.3) * scene.half_h
    rig_w, rig_h = rng.uniform(0.08, 0.16) * scene.width, rng.uniform(0.12, 0.3) * scene.height
    rig = soft_box(u - rig_u, rig_w) * soft_box(v - rig_v, rig_h)
    glass += rng.uniform(-6.0, 5.0) * rig
    for _ in range(rng.integers(0, 4)):
        # Smudges: big faint blobs with no edge at all.
        su, sv = (
            rng.uniform(-1, 1) * scene.screen_half_w,
            rng.uniform(-1, 1) * scene.screen_half_h,
        )
        sigma_u = rng.uniform(0.04, 0.12) * scene.width
        sigma_v = rng.uniform(0.04, 0.12) * scene.width
        glass += rng.uniform(1.5, 5.0) * np.exp(
            -(((u - su) / sigma_u) ** 2) - ((v - sv) / sigma_v) ** 2
        )
    return glass


def add_features(scene: Scene, luma: np.ndarray) -> None:
    """Speaker slot, cameras and home button at the phone's ends: sharp, but not defects."""
    rng, s = scene.rng, scene.scale
    side = scene.camera_side
    end_inner, end_outer = scene.screen_half_w, scene.half_w
    middle = (end_inner + end_outer) / 2
    gap = end_outer - end_inner
    box = _end_box(scene, side)
    patch = Patch(box, scene.width, scene.height)
    slot_len = scene.half_h * rng.uniform(0.18, 0.32)
    slot_w = max(1.5, gap * 0.09)
    patch.polygon(_rect_points(scene, side * middle, 0.0, slot_w / 2, slot_len / 2), fill=255)
    for offset in sorted(rng.choice([-1.0, 1.0], size=rng.integers(1, 3), replace=False)):
        cam_u = side * (middle + rng.uniform(-0.1, 0.1) * gap)
        cam_v = offset * scene.half_h * rng.uniform(0.45, 0.6)
        radius = max(1.0, gap * rng.uniform(0.07, 0.14))
        patch.circle(*scene.to_image(cam_u, cam_v), radius, fill=255, outline_only=not scene.white)
    strength = -rng.uniform(70, 140) if scene.white else rng.uniform(18, 40)
    patch.add_to(luma, strength)

    if rng.random() < 0.7:
        other = Patch(_end_box(scene, -side), scene.width, scene.height)
        u0 = -side * middle
        if scene.white:
            other.circle(
                *scene.to_image(u0, 0.0), max(1.0, gap * 0.18), fill=255, outline_only=True
            )
        else:
            points = _rect_points(scene, u0, 0.0, gap * 0.22, scene.half_h * 0.1)
            other.polygon(points, fill=None, outline=255, width=max(1, round(2 * s)))
        other.add_to(luma, -rng.uniform(40, 80) if scene.white else rng.uniform(20, 45))


def add_dust(scene: Scene, luma: np.ndarray) -> None:
    """Dust specks: single pixels or 2x2 dots, point-like so they never look like a line."""
    rng = scene.rng
    count = int(rng.integers(3, 40) * max(scene.scale, 0.25))
    u = rng.uniform(-1, 1, count) * scene.screen_half_w
    v = rng.uniform(-1, 1, count) * scene.screen_half_h
    xs, ys = scene.to_image(u, v)
    xs = np.clip(xs.astype(int), 0, scene.width - 2)
    ys = np.clip(ys.astype(int), 0, scene.height - 2)
    values = rng.uniform(6, 45, count).astype(np.float32)
    luma[ys, xs] += values
    big = rng.random(count) < 0.3 * min(1.0, scene.scale * 2)
    for dy, dx in ((0, 1), (1, 0), (1, 1)):
        luma[ys[big] + dy, xs[big] + dx] += values[big] * 0.6


def _end_box(scene: Scene, side: float) -> Box:
    u = np.array([scene.screen_half_w, scene.half_w]) * side
    us = np.concatenate([u, u])
    vs = np.array([-1, -1, 1, 1]) * scene.half_h
    xs, ys = scene.to_image(us, vs)
    return (int(xs.min()) - 2, int(ys.min()) - 2, int(xs.max()) + 3, int(ys.max()) + 3)


def _rect_points(
    scene: Scene, u: float, v: float, half_u: float, half_v: float
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
    xs, ys = scene.to_image(np.array(corners_u), np.array(corners_v))
    return list(zip(xs.tolist(), ys.tolist(), strict=True))
