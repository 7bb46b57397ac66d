"""Hard-example mining on one image's heatmap: confusing clean cells and missed defects."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from vision.metrics import connected_components

# A clean cell whose logit passes this (p > 0.12) confuses the model.
CONFUSED_LOGIT = -2.0
# A defect is missed when even its hottest cell stays below this (p = 0.5).
MISSED_LOGIT = 0.0


def confusing_clean_cells(cells: torch.Tensor, truth: torch.Tensor, count: int = 3) -> list[int]:
    """Flat indices of up to `count` of the hottest cells clear of every defect (by one cell)
    where the model fires: the few spots random crops rarely land on."""
    # Cells next to a defect are not "clean": the defect may bleed into them.
    near_defect = F.max_pool2d(truth[None, None], 3, stride=1, padding=1)[0, 0] > 0
    clean = cells.masked_fill(near_defect, float("-inf")).flatten()
    return [
        index
        for index in clean.topk(min(count, clean.numel())).indices.tolist()
        if torch.isfinite(clean[index]) and clean[index] > CONFUSED_LOGIT
    ]


def missed_defect_cells(cells: torch.Tensor, truth: torch.Tensor) -> list[int]:
    """For each defect (a connected group of truth cells) the model misses, the flat index of
    its hottest cell."""
    components, count = connected_components(truth.numpy() > 0)
    missed = []
    for label in range(1, count + 1):
        inside = torch.from_numpy(components == label)
        hottest = cells.masked_fill(~inside, float("-inf")).flatten()
        index = int(hottest.argmax())
        if hottest[index] < MISSED_LOGIT:
            missed.append(index)
    return missed
