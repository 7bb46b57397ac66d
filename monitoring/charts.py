"""Server-rendered SVG charts for the monitor pages (no JavaScript library, nothing from a
CDN): a signal's time series with its reference band and the moments of rollouts and setting
changes, the p-chart of hourly defect rates with control limits, and a Pareto of defect types.
Every text that comes from data is escaped."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

WIDTH, HEIGHT = 640, 180
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 26
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")  # a defect type's colour (#rrggbb)
STATUS_COLOURS = {
    "ok": "#157347",
    "warning": "#a15c00",
    "drifted": "#b3261e",
    "insufficient_data": "#8a93a3",
}


@dataclass(frozen=True)
class Point:
    at: datetime
    value: float | None
    status: str
    band: tuple[float | None, float | None] | None = None


@dataclass(frozen=True)
class Marker:
    at: datetime
    label: str  # "rollout: promote v3", "settings: automation_level"


def _scale(low: float, high: float, size: float, start: float, flip: bool = False):
    span = (high - low) or 1.0

    def to(value: float) -> float:
        fraction = (value - low) / span
        return start + (1 - fraction) * size if flip else start + fraction * size

    return to


def _axis_label(value: float, percent: bool) -> str:
    return f"{100 * value:.0f}%" if percent else f"{value:.2g}"


def time_series(
    points: Sequence[Point],
    markers: Sequence[Marker] = (),
    *,
    title: str,
    percent: bool = False,
) -> str:
    """The line of a signal's values over time, the band shaded, each point coloured by its
    status, vertical markers for rollouts and setting changes."""
    label = escape(title)
    drawn = [p for p in points if p.value is not None]
    if not drawn:
        return (
            f'<svg class="chart" role="img" aria-label="{label}: no evaluations yet" '
            f'viewBox="0 0 {WIDTH} 60" width="100%"><text x="8" y="34" class="chart-empty">'
            "No evaluations yet.</text></svg>"
        )
    start, end = drawn[0].at, drawn[-1].at
    if end == start:
        end = start.replace(microsecond=(start.microsecond + 1) % 1_000_000)
    values = [p.value for p in drawn]
    bands = [b for p in drawn if p.band for b in p.band if b is not None]
    low, high = min(values + bands + [0.0]), max(values + bands)
    high = high + (high - low) * 0.1 or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    x_of = _scale(start.timestamp(), end.timestamp(), plot_w, LEFT)
    y_of = _scale(low, high, plot_h, TOP, flip=True)
    parts = [
        f'<svg class="chart" role="img" aria-label="{label}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" data-points="{len(drawn)}">',
        f"<title>{label}</title>",
    ]
    band_points = [p for p in drawn if p.band and None not in p.band]
    if band_points:
        upper = [f"{x_of(p.at.timestamp()):.1f},{y_of(p.band[1]):.1f}" for p in band_points]
        lower = [f"{x_of(p.at.timestamp()):.1f},{y_of(p.band[0]):.1f}" for p in band_points]
        parts.append(
            f'<polygon class="chart-band" points="{" ".join(upper + lower[::-1])}">'
            "<title>reference band</title></polygon>"
        )
    for tick in (low, (low + high) / 2, high):
        y = y_of(tick)
        parts.append(
            f'<line class="chart-grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(f'<text class="chart-axis" x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">'
                     f"{escape(_axis_label(tick, percent))}</text>")  # fmt: skip
    for marker in markers:
        if not start <= marker.at <= end:
            continue
        x = x_of(marker.at.timestamp())
        parts.append(
            f'<line class="chart-marker" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" '
            f'y2="{HEIGHT - BOTTOM}">'
            f"<title>{escape(marker.label)} at {marker.at:%H:%M}</title></line>"
        )
    path = " ".join(f"{x_of(p.at.timestamp()):.1f},{y_of(p.value):.1f}" for p in drawn)
    parts.append(f'<polyline class="chart-line" points="{path}"/>')
    for p in drawn:
        colour = STATUS_COLOURS.get(p.status, "#8a93a3")
        parts.append(
            f'<circle cx="{x_of(p.at.timestamp()):.1f}" cy="{y_of(p.value):.1f}" r="2.6" '
            f'fill="{colour}" data-status="{escape(p.status)}"><title>{p.at:%H:%M} '
            f"{escape(_axis_label(p.value, percent))} ({escape(p.status)})</title></circle>"
        )
    parts.append(f'<text class="chart-axis" x="{LEFT}" y="{HEIGHT - 8}">{start:%d %b %H:%M}</text>')
    parts.append(f'<text class="chart-axis" x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" '
                 f'text-anchor="end">{end:%d %b %H:%M}</text>')  # fmt: skip
    parts.append("</svg>")
    return "".join(parts)


def p_chart(periods: Sequence[dict], center: float | None, *, title: str) -> str:
    """Hourly defect rates as points, the centre line and the varying 3-sigma limits."""
    label = escape(title)
    rated = [p for p in periods if p.get("rate") is not None]
    if not rated or center is None:
        return (
            f'<svg class="chart" role="img" aria-label="{label}: no hours yet" viewBox="0 0 '
            f'{WIDTH} 60" width="100%"><text x="8" y="34" class="chart-empty">No decided captures '
            "in the last hours.</text></svg>"
        )
    top = max([p["rate"] for p in rated] + [p.get("upper_limit") or 0 for p in rated] + [center])
    top = min(1.0, top * 1.15 or 0.1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(periods) - 1, 1)
    y_of = _scale(0.0, top, plot_h, TOP, flip=True)
    parts = [
        f'<svg class="chart" role="img" aria-label="{label}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" data-points="{len(rated)}"><title>{label}</title>'
    ]
    upper = [
        (LEFT + i * step, p["upper_limit"])
        for i, p in enumerate(periods)
        if p.get("upper_limit") is not None
    ]
    lower = [
        (LEFT + i * step, p["lower_limit"])
        for i, p in enumerate(periods)
        if p.get("lower_limit") is not None
    ]
    for name, limits in (("ucl", upper), ("lcl", lower)):
        if limits:
            path = " ".join(f"{x:.1f},{y_of(v):.1f}" for x, v in limits)
            parts.append(f'<polyline class="chart-limit" data-limit="{name}" points="{path}"/>')
    y = y_of(center)
    parts.append(f'<line class="chart-center" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" '
                 f'y2="{y:.1f}">'
                 f"<title>centre {100 * center:.1f}%</title></line>")  # fmt: skip
    parts.append(f'<text class="chart-axis" x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">'
                 f"{100 * center:.1f}%</text>")  # fmt: skip
    for i, p in enumerate(periods):
        if p.get("rate") is None:
            continue
        colour = STATUS_COLOURS["drifted"] if p.get("beyond") else STATUS_COLOURS["ok"]
        hour = escape(str(p.get("hour", ""))[11:16])
        parts.append(
            f'<circle cx="{LEFT + i * step:.1f}" cy="{y_of(p["rate"]):.1f}" r="3" fill="{colour}">'
            f"<title>{hour}: {100 * p['rate']:.1f}% of {int(p['total'])}</title></circle>"
        )
    first, last = (
        escape(str(periods[0].get("hour", ""))[11:16]),
        escape(str(periods[-1].get("hour", ""))[11:16]),
    )
    parts.append(f'<text class="chart-axis" x="{LEFT}" y="{HEIGHT - 8}">{first}</text>')
    parts.append(
        f'<text class="chart-axis" x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" '
        f'text-anchor="end">{last}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def pareto_bars(entries: Sequence[dict], *, title: str) -> str:
    """Defect types, largest first, bars with their cumulative share."""
    label = escape(title)
    if not entries:
        return (
            f'<svg class="chart" role="img" aria-label="{label}: none" viewBox="0 0 {WIDTH} 40" '
            'width="100%"><text x="8" y="24" class="chart-empty">No defects labelled by '
            "inspectors in the last 24 hours.</text></svg>"
        )
    row, label_w = 22, 120
    height = TOP + row * len(entries) + 8
    biggest = max(e["count"] for e in entries) or 1
    parts = [
        f'<svg class="chart" role="img" aria-label="{label}" viewBox="0 0 {WIDTH} {height}" '
        f'width="100%"><title>{label}</title>'
    ]
    for i, entry in enumerate(entries):
        y = TOP + i * row
        width = (WIDTH - label_w - 120) * entry["count"] / biggest
        name = escape(str(entry.get("label") or entry["name"]))
        parts.append(
            f'<text class="chart-axis" x="{label_w - 6}" y="{y + 14}" '
            f'text-anchor="end">{name}</text>'
        )
        # The taxonomy's colour, as an attribute (the CSP refuses style attributes).
        colour = str(entry.get("colour") or "")
        fill = (
            f'class="chart-bar-typed" fill="{colour}"'
            if _COLOUR.fullmatch(colour)
            else 'class="chart-bar"'
        )
        parts.append(
            f'<rect {fill} x="{label_w}" y="{y + 3}" width="{width:.1f}" height="{row - 8}"/>'
        )
        count = entry["count"]
        parts.append(f'<text class="chart-axis" x="{label_w + width + 6:.1f}" y="{y + 14}">{count} '
                     f'(cumulative {100 * entry["cumulative_share"]:.0f}%)</text>')  # fmt: skip
    parts.append("</svg>")
    return "".join(parts)
