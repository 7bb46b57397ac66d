"""The defects a model must find (scratches, cracks, stains), drawn with their pixel masks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vision.synth.drawing import Box, Patch
from vision.synth.scene import Scene, Tints

DEFECT_TYPES = ("scratch", "crack", "stain")
# Scratches are what the stations mostly catch; cracks and stains keep the model honest.
DEFECT_WEIGHTS = (0.6, 0.2, 0.2)
MASK_COVERAGE = 0.25  # a pixel belongs to a defect when the defect covers a quarter of it


@dataclass(frozen=True)
class Defect:
    defect_type: str
    box: Box  # (x0, y0, x1, y1) of its mask pixels, ends exclusive
    width_px: float  # stroke width (scratch, crack) or diameter (stain) in pixels
    contrast: float  # added brightness at its brightest, as a share of 255


def add_defect(
    scene: Scene, defect_type: str, luma: np.ndarray, mask: np.ndarray, tints: Tints
) -> Defect | None:
    """Draw one defect on the screen into `luma`, its pixels into `mask` and any colour into
    `tints`; None when five tries all fell off the screen."""
    draw = _DRAWERS[defect_type]
    for _ in range(5):  # a defect clipped away at the screen's edge is drawn again
        patch, width_px, contrast, tint = draw(scene)
        coverage = patch.coverage() * scene.screen_alpha[patch.rows, patch.cols]
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


def _contrast(scene: Scene, low: float, high: float) -> float:
    # A quarter are faint: a careful inspector sees them, a careless model does not.
    if scene.rng.random() < 0.25:
        return float(scene.rng.uniform(low * 0.5, low))
    return float(scene.rng.uniform(low, high))


def _screen_point(scene: Scene, margin: float) -> tuple[float, float]:
    u = scene.rng.uniform(-1, 1) * max(scene.screen_half_w - margin, 1.0)
    v = scene.rng.uniform(-1, 1) * max(scene.screen_half_h - margin, 1.0)
    return float(u), float(v)


def _scratch(scene: Scene) -> tuple[Patch, float, float, None]:
    rng, s = scene.rng, scene.scale
    length = max(6.0, math.exp(rng.uniform(math.log(20), math.log(300))) * s)
    width_px = max(
        1.0, rng.choice([rng.uniform(1.0, 2.0), rng.uniform(2.0, 4.0)], p=[0.7, 0.3]) * s
    )
    u0, v0 = _screen_point(scene, margin=2 * width_px)
    angle = rng.uniform(0, 2 * math.pi)
    # Keep the far end on the screen by shortening the scratch, not by bending it back.
    limit_u = scene.screen_half_w - 2 * width_px
    limit_v = scene.screen_half_h - 2 * width_px

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
    xs, ys = scene.to_image(u, v)
    patch = Patch.around(xs, ys, width_px + 2, scene.width, scene.height)
    # Brighter in the middle, fading at the ends, with the flicker of a real groove.
    profile = (0.55 + 0.45 * np.sin(np.pi * t)) * rng.uniform(0.75, 1.0, t.size)
    patch.polyline(xs, ys, width_px, values=profile)
    return patch, width_px, _contrast(scene, 0.2, 0.8), None


def _crack(scene: Scene) -> tuple[Patch, float, float, None]:
    rng, s = scene.rng, scene.scale
    width_px = max(1.0, rng.uniform(1.0, 2.0) * s)
    step = max(2.0, rng.uniform(5, 12) * s)
    u0, v0 = _screen_point(scene, margin=0.2 * scene.screen_half_h)
    branches = []
    for _ in range(rng.integers(2, 5)):
        branches.append(
            _jagged(scene, u0, v0, rng.uniform(0, 2 * math.pi), step, rng.uniform(30, 160) * s)
        )
        if rng.random() < 0.5:
            # A side branch from a random knee of the one just drawn.
            bu, bv = branches[-1]
            k = rng.integers(0, len(bu))
            branches.append(
                _jagged(
                    scene, bu[k], bv[k], rng.uniform(0, 2 * math.pi), step, rng.uniform(15, 60) * s
                )
            )
    points = [scene.to_image(bu, bv) for bu, bv in branches]
    all_x = np.concatenate([p[0] for p in points])
    all_y = np.concatenate([p[1] for p in points])
    patch = Patch.around(all_x, all_y, width_px + 4 * max(s, 0.25), scene.width, scene.height)
    for xs, ys in points:
        patch.polyline(xs, ys, width_px, values=rng.uniform(0.6, 1.0, xs.size))
    patch.circle(*scene.to_image(u0, v0), max(1.0, 2.5 * s), fill=255)
    return patch, width_px, _contrast(scene, 0.25, 0.7), None


def _jagged(
    scene: Scene, u: float, v: float, angle: float, step: float, length: float
) -> tuple[np.ndarray, np.ndarray]:
    steps = max(2, int(length / step))
    angles = angle + np.cumsum(scene.rng.uniform(-0.35, 0.35, steps))
    us = u + np.concatenate([[0.0], np.cumsum(np.cos(angles) * step)])
    vs = v + np.concatenate([[0.0], np.cumsum(np.sin(angles) * step)])
    return (
        np.clip(us, -scene.screen_half_w, scene.screen_half_w),
        np.clip(vs, -scene.screen_half_h, scene.screen_half_h),
    )


def _stain(scene: Scene) -> tuple[Patch, float, float, np.ndarray]:
    rng, s = scene.rng, scene.scale
    radius = max(2.0, rng.uniform(5, 32) * s)
    u0, v0 = _screen_point(scene, margin=radius)
    cx, cy = scene.to_image(u0, v0)
    patch = Patch.around(
        np.array([cx - radius * 1.4, cx + radius * 1.4]),
        np.array([cy - radius * 1.4, cy + radius * 1.4]),
        1.0,
        scene.width,
        scene.height,
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
            radius * rng.uniform(0.0, 0.12) * np.sin(harmonic * theta + rng.uniform(0, 2 * math.pi))
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
    return patch, 2 * radius, _contrast(scene, 0.08, 0.22), tint


# Each returns its patch, width (or diameter) in pixels, contrast and colour tint (or None).
_DRAWERS = {"scratch": _scratch, "crack": _crack, "stain": _stain}
