"""Loss terms for each kind of supervision: cell masks, coarse-mask bags and box bags."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.nn import functional as F


def cell_targets(mask: torch.Tensor, stride: int) -> torch.Tensor:
    """(N, H, W) bool pixel masks -> (N, 1, h, w) cell targets: a cell is a defect when any of
    its pixels is."""
    return F.max_pool2d(
        mask.float().unsqueeze(1), kernel_size=stride, stride=stride, ceil_mode=True
    )


def cell_shares(mask: torch.Tensor, stride: int) -> torch.Tensor:
    """(N, H, W) bool pixel masks -> (N, 1, h, w): each cell's share of defect pixels (cells
    past the image's edge count the pixels inside only)."""
    pixels = mask.float().unsqueeze(1)
    kept = F.avg_pool2d(torch.ones_like(pixels), stride, stride, ceil_mode=True)
    return F.avg_pool2d(pixels, stride, stride, ceil_mode=True) / kept.clamp_min(1e-6)


def outline_loss(logits: torch.Tensor, shares: torch.Tensor) -> torch.Tensor:
    """The outline head against each cell's defect share: cross-entropy cell by cell, plus a
    soft Dice over the whole batch, so large areas count by their size (as pixel IoU does)
    and a batch of clean crops still teaches "nothing here"."""
    probabilities = torch.sigmoid(logits)
    dice = 1 - (2 * (probabilities * shares).sum() + 1) / (probabilities.sum() + shares.sum() + 1)
    return F.binary_cross_entropy_with_logits(logits, shares) + dice


def mask_bag_loss(logits: torch.Tensor, cell_truth: torch.Tensor) -> torch.Tensor:
    """Coarse masks: the hottest cell inside each crop's mask is a defect, cells clear of the
    mask (by one cell) are clean, the rest inside is left alone."""
    inside = cell_truth > 0
    near = F.max_pool2d(cell_truth, 3, stride=1, padding=1) > 0
    losses = []
    has_defect = inside.flatten(1).any(dim=1)
    if has_defect.any():
        best = logits.masked_fill(~inside, float("-inf")).flatten(1).amax(dim=1)[has_defect]
        losses.append(F.binary_cross_entropy_with_logits(best, torch.ones_like(best)))
    clean = logits[~near]
    if clean.numel():
        losses.append(F.binary_cross_entropy_with_logits(clean, torch.zeros_like(clean)))
    return torch.stack(losses).mean() if losses else logits.sum() * 0.0


def box_bag_loss(logits: torch.Tensor, boxes: Sequence, stride: int) -> tuple[torch.Tensor, int]:
    """Multiple-instance loss for one crop's boxes: the best cell in each box is a defect, cells
    outside every box are clean."""
    _, height, width = logits.shape
    outside = torch.ones(height, width, dtype=torch.bool)
    losses = []
    for x0, y0, x1, y1 in boxes:
        r0, r1 = max(0, y0 // stride), min(height, math.ceil(y1 / stride))
        c0, c1 = max(0, x0 // stride), min(width, math.ceil(x1 / stride))
        if r1 <= r0 or c1 <= c0:
            continue
        outside[r0:r1, c0:c1] = False
        best = logits[0, r0:r1, c0:c1].max()
        losses.append(F.binary_cross_entropy_with_logits(best, torch.ones(())))
    negatives = logits[0][outside]
    if negatives.numel():
        losses.append(F.binary_cross_entropy_with_logits(negatives, torch.zeros_like(negatives)))
    if not losses:
        return logits.sum() * 0.0, 0
    return torch.stack(losses).mean(), 1
