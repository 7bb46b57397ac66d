"""Training: items in, a calibrated model out, with progress reports and cooperative cancel.

Supervision is whatever the item has. A pixel mask (synthetic phones, labelled tiles) gives
each heatmap cell a target. Boxes from inspectors say "some cell inside is defective, every
cell outside is clean" (multiple-instance learning per box). An image-level label alone says
"some cell is defective" for a defect and "no cell is" for an ok image.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import platform
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from vision.artifacts import save_artifact
from vision.datasets import Item, split_items
from vision.metrics import auroc, average_precision, connected_components, threshold_for_recall
from vision.model import NORMALIZATION, ModelConfig, ScratchNet, build_model, images_to_tensor

ProgressCallback = Callable[[dict[str, Any]], None]
StopCallback = Callable[[], bool]


class TrainingCancelled(Exception):
    """should_stop() said stop: no model is produced."""


class TrainingDataError(ValueError):
    """The items cannot train a model (e.g. no defect or no ok example)."""


@dataclass(frozen=True)
class TrainConfig:
    minutes: float = 4.0
    max_epochs: int = 100
    steps_per_epoch: int = 100
    batch_size: int = 12
    crop: int = 192
    learning_rate: float = 4e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.2
    patience: int = 20
    seed: int = 0
    target_recall: float = 0.99
    target_precision: float = 0.99
    # Heatmap level at which a cell belongs to a region. None: calibrated on the clean
    # validation images (see region_threshold_for).
    region_threshold: float | None = None
    # Share of defect crops centred on a defect (the rest are random): defects are small, a
    # random crop would mostly show clean screen.
    defect_centred: float = 0.8
    # Share of clean crops taken where the model currently fires by mistake, re-mined every
    # epoch on `mine_images` training images.
    hard_negative_share: float = 0.5
    # Share of defect crops centred on defect pixels the model still scores low (a scratch hugging
    # the screen's edge looks like the rim's highlight), re-mined with the hard negatives.
    hard_positive_share: float = 0.3
    # Defect cells are rare on phones (thin scratches): weigh them up. Datasets whose defects
    # cover large areas need less.
    positive_cell_weight: float = 10.0
    # Masks covering more than this share of their image are trained as bags (see _Sample).
    coarse_mask_fraction: float = 0.02
    mine_images: int = 48
    # Quarter turns in augmentation (flips always). Off for surfaces whose texture has a fixed
    # direction (ground magnetic tiles), where a turned crop shows a surface that never occurs.
    rotate: bool = True
    # Zoom augmentation: each batch is cropped at crop * exp(U(-j, j)) and resized to `crop`,
    # for parts photographed at varying distances or downscaled (0: off).
    scale_jitter: float = 0.0
    threads: int | None = None
    device: str = "auto"
    max_steps: int | None = None  # hard cap for tests and smoke runs
    model: ModelConfig = field(default_factory=ModelConfig)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["model"] = self.model.to_dict()
        return data


@dataclass
class TrainResult:
    model: ScratchNet
    metadata: dict[str, Any]
    history: list[dict[str, Any]]
    stopped_because: str

    def save(self, path: str | Path) -> str:
        return save_artifact(path, self.model, self.metadata)


@dataclass(eq=False)
class _Sample:
    image: np.ndarray  # (H, W, 3) uint8
    label: int  # 1 defect, 0 ok
    pixel_mask: np.ndarray | None  # bool (H, W): every pixel's truth is known
    boxes: tuple[tuple[int, int, int, int], ...]  # weak: somewhere inside each box
    defect_pixels: np.ndarray | None  # (K, 2) y, x to centre crops on
    # A mask over a large share of the image outlines an area rather than tracing the defect:
    # its cells are trained as one bag (some cell inside is a defect), not cell by cell.
    coarse: bool = False


def data_hash(items: Sequence[Item]) -> str:
    """A hash of the training data list: which files (or synthetic ids) with which labels."""
    rows = sorted(
        json.dumps(
            [
                str(item.path) if item.path else item.group,
                item.label,
                item.defect_type,
                str(item.mask_path or ""),
                [list(box) for box in item.boxes],
            ]
        )
        for item in items
    )
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def _load_sample(item: Item, coarse_fraction: float = 1.0) -> _Sample:
    image = item.load_image()
    label = 1 if item.label == "defect" else 0
    pixel_mask = None
    if item.mask is not None or item.mask_path is not None:
        pixel_mask = item.load_mask()
        if pixel_mask is not None and label == 1 and not pixel_mask.any():
            pixel_mask = None  # a defect with an empty mask: the defect is unlocated, not absent
    boxes = tuple(item.boxes) if pixel_mask is None and label == 1 else ()
    if label == 0:
        pixel_mask = np.zeros(image.shape[:2], dtype=bool)
    defect_pixels = None
    if pixel_mask is not None and pixel_mask.any():
        defect_pixels = np.argwhere(pixel_mask)
    elif boxes:
        defect_pixels = np.array([((y0 + y1) // 2, (x0 + x1) // 2) for x0, y0, x1, y1 in boxes])
    coarse = label == 1 and pixel_mask is not None and pixel_mask.mean() > coarse_fraction
    return _Sample(image, label, pixel_mask, boxes, defect_pixels, coarse)


def _crop(sample: _Sample, size: int, rng: random.Random, centre: tuple[int, int] | None) -> tuple:
    """A size x size crop around `centre` (y, x; jittered) or anywhere, edge-padded when the
    image is smaller, with its targets."""
    height, width = sample.image.shape[:2]
    if centre is not None:
        cy, cx = centre
        top = int(cy) - size // 2 + rng.randint(-size // 4, size // 4)
        left = int(cx) - size // 2 + rng.randint(-size // 4, size // 4)
    else:
        # Overshoot, then clamp: a quarter crop's worth of positions falls on each border.
        # Uniform positions would show an image's border in almost no clean crop, while crops
        # centred on a defect at the edge (a chipped tile) show it every time, and the model
        # would learn "border means defect".
        top = rng.randint(-size // 4, max(0, height - size) + size // 4)
        left = rng.randint(-size // 4, max(0, width - size) + size // 4)
    top = min(max(0, top), max(0, height - size))
    left = min(max(0, left), max(0, width - size))
    image = sample.image[top : top + size, left : left + size]
    mask = (
        None
        if sample.pixel_mask is None
        else sample.pixel_mask[top : top + size, left : left + size]
    )
    pad_h, pad_w = size - image.shape[0], size - image.shape[1]
    if pad_h or pad_w:
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        if mask is not None:
            mask = np.pad(mask, ((0, pad_h), (0, pad_w)), mode="constant")
    boxes = tuple(
        (x0 - left, y0 - top, x1 - left, y1 - top)
        for x0, y0, x1, y1 in sample.boxes
        if x1 > left and x0 < left + size and y1 > top and y0 < top + size
    )
    if mask is not None:
        label = int(mask.any())
    elif sample.boxes:
        label = int(bool(boxes))
    else:
        label = sample.label
    return image, mask, boxes, label


def _augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Lighting and sensor variation on normalised (N, 3, H, W) crops."""
    n = batch.shape[0]
    gain = 1.0 + (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.6
    colour = 1.0 + (torch.rand(n, 3, 1, 1, generator=generator) - 0.5) * 0.2
    offset = (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.4
    noise = torch.randn(batch.shape, generator=generator) * (
        torch.rand(n, 1, 1, 1, generator=generator) * 0.06
    )
    return batch * gain * colour + offset + noise


def _flip_rotate(
    image: np.ndarray, mask: np.ndarray | None, rng: random.Random, *, rotate: bool = True
) -> tuple:
    turns = rng.randrange(4) if rotate else 2 * rng.randrange(2)
    flip = rng.random() < 0.5
    image = np.rot90(image, turns)
    mask = None if mask is None else np.rot90(mask, turns)
    if flip:
        image = image[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]
    return np.ascontiguousarray(image), None if mask is None else np.ascontiguousarray(mask)


def _resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A square bool mask resized to size x size; a thin stroke survives shrinking (a pixel is a
    defect when any pixel it covers was)."""
    tensor = torch.from_numpy(np.ascontiguousarray(mask)).float()[None, None]
    if mask.shape[0] > size:
        tensor = F.adaptive_max_pool2d(tensor, size)
    else:
        tensor = F.interpolate(tensor, size=(size, size), mode="nearest")
    return tensor[0, 0].numpy() > 0


def _cell_targets(mask: torch.Tensor, stride: int) -> torch.Tensor:
    """(N, H, W) bool pixel masks -> (N, 1, h, w) cell targets: a cell is a defect when any of
    its pixels is."""
    return F.max_pool2d(
        mask.float().unsqueeze(1), kernel_size=stride, stride=stride, ceil_mode=True
    )


def _mask_bag_loss(logits: torch.Tensor, cell_truth: torch.Tensor) -> torch.Tensor:
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


def _box_bag_loss(logits: torch.Tensor, boxes: Sequence, stride: int) -> tuple[torch.Tensor, int]:
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


class _Trainer:
    def __init__(self, samples: list[_Sample], config: TrainConfig, device: torch.device):
        self.samples = samples
        self.config = config
        self.device = device
        self.rng = random.Random(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.model = build_model(config.model).to(device).to(memory_format=torch.channels_last)
        self.stride = config.model.stride
        self.defects = [s for s in samples if s.label == 1]
        self.oks = [s for s in samples if s.label == 0]
        # Defects known only by an image label cannot be cropped safely: they train whole.
        self.whole = [s for s in self.defects if s.pixel_mask is None and not s.boxes]
        self.croppable = [s for s in self.defects if s.pixel_mask is not None or s.boxes]
        self.hard_negatives: list[tuple[_Sample, tuple[int, int]]] = []
        self.hard_positives: list[tuple[_Sample, tuple[int, int]]] = []
        # Missed defects found so far, per sample: each epoch re-mines only a few images, so
        # the pool keeps the others' misses until their image is looked at again.
        self._missed: dict[int, list[tuple[_Sample, tuple[int, int]]]] = {}

    def _pick(self, *, defect: bool) -> tuple[_Sample, tuple[int, int] | None]:
        """A sample and where to centre its crop (None: anywhere)."""
        if defect:
            if self.hard_positives and self.rng.random() < self.config.hard_positive_share:
                return self.hard_positives[self.rng.randrange(len(self.hard_positives))]
            sample = self.croppable[self.rng.randrange(len(self.croppable))]
            if self.rng.random() < self.config.defect_centred:
                pixels = sample.defect_pixels
                y, x = pixels[self.rng.randrange(len(pixels))]
                return sample, (int(y), int(x))
            return sample, None
        if self.hard_negatives and self.rng.random() < self.config.hard_negative_share:
            return self.hard_negatives[self.rng.randrange(len(self.hard_negatives))]
        pool = self.oks or self.croppable
        return pool[self.rng.randrange(len(pool))], None

    @torch.no_grad()
    def mine_hard_examples(self) -> None:
        """Find where the model now fires on clean surface (screen edges, reflections, dust)
        and crop there more often: random crops rarely land on those few confusing spots.
        With hard_positive_share, also find the defects it scores lowest (fine masks only)."""
        candidates = [s for s in self.samples if s.pixel_mask is not None]
        if not candidates:
            return
        chosen = self.rng.sample(candidates, min(len(candidates), self.config.mine_images))
        self.model.eval()
        negatives = []
        for sample in chosen:
            logits, _ = self.model(images_to_tensor([sample.image]).to(self.device))
            height, width = sample.image.shape[:2]
            cells = logits[0, 0, : -(-height // self.stride), : -(-width // self.stride)].cpu()
            truth = _cell_targets(torch.from_numpy(sample.pixel_mask)[None], self.stride)[0, 0]
            # Cells next to a defect are not "clean": the defect may bleed into them.
            near_defect = F.max_pool2d(truth[None, None], 3, stride=1, padding=1)[0, 0] > 0
            clean = cells.masked_fill(near_defect, float("-inf")).flatten()
            for index in clean.topk(min(3, clean.numel())).indices.tolist():
                if torch.isfinite(clean[index]) and clean[index] > -2.0:  # p > 0.12: confused
                    negatives.append((sample, self._cell_centre(index, truth.shape[1])))
            if self.config.hard_positive_share and truth.any() and not sample.coarse:
                # A defect is missed when even its hottest cell stays below p = 0.5.
                components, count = connected_components(truth.numpy() > 0)
                missed = []
                for label in range(1, count + 1):
                    inside = torch.from_numpy(components == label)
                    hottest = cells.masked_fill(~inside, float("-inf")).flatten()
                    index = int(hottest.argmax())
                    if hottest[index] < 0.0:
                        missed.append((sample, self._cell_centre(index, truth.shape[1])))
                self._missed[id(sample)] = missed
        self.hard_negatives = negatives
        self.hard_positives = [entry for missed in self._missed.values() for entry in missed]
        self.model.train()

    def _cell_centre(self, index: int, columns: int) -> tuple[int, int]:
        row, col = divmod(index, columns)
        return row * self.stride + self.stride // 2, col * self.stride + self.stride // 2

    def batch_loss(self) -> torch.Tensor:
        config = self.config
        crops, masks, boxes_list, labels, coarse = [], [], [], [], []
        source = config.crop
        if config.scale_jitter:
            zoom = math.exp(self.rng.uniform(-config.scale_jitter, config.scale_jitter))
            source = max(self.stride, round(config.crop * zoom))
        for index in range(config.batch_size):
            sample, centre = self._pick(defect=index % 2 == 0 and bool(self.croppable))
            image, mask, boxes, label = _crop(sample, source, self.rng, centre)
            if source != config.crop:
                factor = config.crop / source
                mask = None if mask is None else _resize_mask(mask, config.crop)
                boxes = tuple(tuple(int(round(value * factor)) for value in box) for box in boxes)
            coarse.append(sample.coarse)
            if boxes:
                # Rotating boxes is fiddly and their loss is loose anyway: keep their orientation.
                image = np.ascontiguousarray(image)
            else:
                image, mask = _flip_rotate(image, mask, self.rng, rotate=config.rotate)
            crops.append(image)
            masks.append(mask)
            boxes_list.append(boxes)
            labels.append(label)
        batch = images_to_tensor(crops)
        if source != config.crop:
            batch = F.interpolate(
                batch, size=(config.crop, config.crop), mode="bilinear", antialias=True
            ).contiguous(memory_format=torch.channels_last)
        batch = _augment(batch, self.generator).to(self.device)
        logits, image_logits = self.model(batch)
        target_labels = torch.tensor(labels, dtype=torch.float32, device=self.device)
        loss = F.binary_cross_entropy_with_logits(image_logits, target_labels)
        with_mask = [i for i, m in enumerate(masks) if m is not None and not coarse[i]]
        if with_mask:
            cell_truth = _cell_targets(
                torch.from_numpy(np.stack([masks[i] for i in with_mask])), self.stride
            ).to(self.device)
            cell_logits = logits[with_mask]
            # Defect cells are rare: weigh them up so the heatmap does not learn "all clean".
            weight = 1.0 + (config.positive_cell_weight - 1.0) * cell_truth
            loss = loss + F.binary_cross_entropy_with_logits(cell_logits, cell_truth, weight=weight)
        bagged = [i for i, m in enumerate(masks) if m is not None and coarse[i]]
        if bagged:
            cell_truth = _cell_targets(
                torch.from_numpy(np.stack([masks[i] for i in bagged])), self.stride
            ).to(self.device)
            loss = loss + _mask_bag_loss(logits[bagged], cell_truth)
        box_losses = [
            _box_bag_loss(logits[i], boxes_list[i], self.stride)[0]
            for i, m in enumerate(masks)
            if m is None and boxes_list[i]
        ]
        if box_losses:
            loss = loss + torch.stack(box_losses).mean()
        if self.whole and self.rng.random() < len(self.whole) / max(1, len(self.defects)):
            sample = self.whole[self.rng.randrange(len(self.whole))]
            whole = _augment(images_to_tensor([sample.image]), self.generator).to(self.device)
            _, whole_logit = self.model(whole)
            loss = loss + F.binary_cross_entropy_with_logits(
                whole_logit, torch.ones(1, device=self.device)
            )
        return loss

    @torch.no_grad()
    def scores(self, samples: Sequence[_Sample]) -> tuple[np.ndarray, np.ndarray]:
        """Each image's score and its hottest heatmap cell (both probabilities)."""
        self.model.eval()
        result, peaks = [], []
        for sample in samples:
            logits, image_logit = self.model(images_to_tensor([sample.image]).to(self.device))
            height, width = sample.image.shape[:2]
            cells = logits[0, 0, : -(-height // self.stride), : -(-width // self.stride)]
            result.append(torch.sigmoid(image_logit).item())
            peaks.append(torch.sigmoid(cells.max()).item())
        self.model.train()
        return np.array(result), np.array(peaks)


def _validation_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    eps = 1e-6
    clipped = np.clip(scores, eps, 1 - eps)
    loss = float(-np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped)))
    metrics = {"val_loss": loss}
    if 0 < labels.sum() < len(labels):
        metrics["val_auroc"] = auroc(labels, scores)
        metrics["val_average_precision"] = average_precision(labels, scores)
    return metrics


def calibrate_thresholds(
    labels: np.ndarray, scores: np.ndarray, *, target_recall: float, target_precision: float
) -> dict[str, float]:
    """Pass below `pass`, fail at or above `fail`, a human in between.

    `pass` keeps at least target_recall of the validation defects at or above it, moved
    halfway down to the nearest ok score for a margin. `fail` is the lowest score where
    precision reaches target_precision, never below `pass`.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=float)
    if not (0 < labels.sum() < len(labels)):
        return {"pass": 0.5, "fail": 0.5, "target_recall": target_recall}
    recall_threshold = threshold_for_recall(labels, scores, target_recall)
    ok_below = scores[(labels == 0) & (scores < recall_threshold)]
    pass_threshold = (
        (recall_threshold + ok_below.max()) / 2 if ok_below.size else recall_threshold / 2
    )
    fail_threshold = 1.0
    for threshold in np.unique(scores):
        predicted = scores >= threshold
        precision = labels[predicted].mean()
        if precision >= target_precision:
            fail_threshold = float(threshold)
            break
    fail_threshold = max(fail_threshold, pass_threshold)
    return {
        "pass": float(pass_threshold),
        "fail": float(fail_threshold),
        "target_recall": target_recall,
        "target_precision": target_precision,
    }


REGION_THRESHOLD_RANGE = (0.25, 0.5)
# Share of clean validation images allowed to show a region at the calibrated level.
CLEAN_IMAGES_WITH_REGIONS = 0.02


def region_threshold_for(clean_peaks: np.ndarray, configured: float | None = None) -> float:
    """The heatmap level that makes a region, from the hottest cell of each clean validation
    image: the lowest level that at most CLEAN_IMAGES_WITH_REGIONS of them reach.

    Regions are where an inspector looks, so a faint second scratch beside an obvious one should
    be outlined, while clean phones should show nothing. Kept within REGION_THRESHOLD_RANGE: a
    model that fires on clean surface does not paint every speck (at most 0.5), and a tiny or
    unlucky validation split does not outline sensor noise (at least 0.25).
    """
    if configured is not None:
        return float(configured)
    low, high = REGION_THRESHOLD_RANGE
    clean_peaks = np.asarray(clean_peaks, dtype=float)
    if not clean_peaks.size:
        return high
    level = float(np.quantile(clean_peaks, 1.0 - CLEAN_IMAGES_WITH_REGIONS, method="higher"))
    return float(min(high, max(low, np.nextafter(level, 1.0))))


def _progress(step: int, total_steps: int, started: float, budget_s: float) -> float:
    """How far training is: by steps or by the time budget, whichever runs out first."""
    return min(1.0, max(step / total_steps, (time.monotonic() - started) / budget_s))


def _set_learning_rate(optimizer: torch.optim.Optimizer, peak: float, progress: float) -> None:
    """Short warm-up, then cosine decay to zero at the end of the budget. Scheduled on progress,
    not steps, so a run stopped by the clock still ends annealed."""
    warmup = 0.05
    if progress < warmup:
        rate = peak * (0.1 + 0.9 * progress / warmup)
    else:
        rate = peak * 0.5 * (1 + math.cos(math.pi * (progress - warmup) / (1 - warmup)))
    for group in optimizer.param_groups:
        group["lr"] = rate


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def train(
    items: Sequence[Item],
    *,
    config: TrainConfig | None = None,
    progress: ProgressCallback | None = None,
    should_stop: StopCallback | None = None,
    val_items: Sequence[Item] | None = None,
) -> TrainResult:
    """Train a ScratchNet on `items`; the validation split is taken from them unless given."""
    config = config or TrainConfig()
    started = time.monotonic()
    report = progress or (lambda event: None)
    stop = should_stop or (lambda: False)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    device = _pick_device(config.device)

    items = list(items)
    if val_items is None:
        train_items, val_items = split_items(
            items, fractions=(1 - config.val_fraction, config.val_fraction), seed=config.seed
        )
    else:
        train_items, val_items = items, list(val_items)
    for name, group in (("training", train_items), ("validation", val_items)):
        labels = {item.label for item in group}
        if labels != {"ok", "defect"}:
            raise TrainingDataError(
                f"the {name} split needs both ok and defect images; it has "
                f"{sorted(labels) or 'none'} ({len(group)} items)"
            )
    report({"event": "loading", "items": len(items)})
    samples = [_load_sample(item, config.coarse_mask_fraction) for item in train_items]
    val_samples = [_load_sample(item, config.coarse_mask_fraction) for item in val_items]
    val_labels = np.array([s.label for s in val_samples])

    trainer = _Trainer(samples, config, device)
    optimizer = torch.optim.AdamW(
        trainer.model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    budget_s = config.minutes * 60
    total_steps = config.max_epochs * config.steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    _set_learning_rate(optimizer, config.learning_rate, 0.0)
    history: list[dict[str, Any]] = []
    best_state, best_key, best_epoch = None, (-math.inf, -math.inf), 0
    stopped_because = "max_epochs"
    step = 0
    trainer.model.train()
    for epoch in range(1, config.max_epochs + 1):
        epoch_losses = []
        if epoch > 1:
            trainer.mine_hard_examples()
        for _ in range(config.steps_per_epoch):
            if stop():
                raise TrainingCancelled(f"cancelled at epoch {epoch}, step {step}")
            loss = trainer.batch_loss()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            _set_learning_rate(
                optimizer, config.learning_rate, _progress(step, total_steps, started, budget_s)
            )
            epoch_losses.append(loss.item())
            elapsed = time.monotonic() - started
            report(
                {
                    "event": "step",
                    "epoch": epoch,
                    "step": step,
                    "total_steps": total_steps,
                    "loss": epoch_losses[-1],
                    "elapsed_s": elapsed,
                    "fraction": _progress(step, total_steps, started, budget_s),
                }
            )
            if step >= total_steps or elapsed >= budget_s:
                break
        val_scores, _ = trainer.scores(val_samples)
        metrics = _validation_metrics(val_labels, val_scores)
        entry = {
            "epoch": epoch,
            "step": step,
            "train_loss": float(np.mean(epoch_losses)),
            **metrics,
            "elapsed_s": time.monotonic() - started,
        }
        history.append(entry)
        report({"event": "epoch", **entry, "total_steps": total_steps})
        # Ranking matters most (AUROC); the loss breaks ties once AUROC saturates at 1.0.
        key = (metrics.get("val_auroc", 0.0), -metrics["val_loss"])
        if key > best_key:
            best_key, best_epoch = key, epoch
            best_state = copy.deepcopy(trainer.model.state_dict())
        if step >= total_steps:
            stopped_because = "max_steps" if config.max_steps is not None else "max_epochs"
            break
        if time.monotonic() - started >= budget_s:
            stopped_because = "time_budget"
            break
        if epoch - best_epoch >= config.patience:
            stopped_because = "early_stopping"
            break
    if best_state is not None:
        trainer.model.load_state_dict(best_state)
    trainer.model.eval()
    val_scores, val_peaks = trainer.scores(val_samples)
    trainer.model.eval()
    thresholds = calibrate_thresholds(
        val_labels,
        val_scores,
        target_recall=config.target_recall,
        target_precision=config.target_precision,
    )
    metrics = _validation_metrics(val_labels, val_scores)
    sizes = sorted({s.image.shape[:2] for s in samples})
    metadata = {
        "created_at": datetime.now(UTC).isoformat(),
        "normalization": NORMALIZATION,
        "stride": config.model.stride,
        "input_size": {"train_crop": config.crop, "example_hw": list(sizes[len(sizes) // 2])},
        "thresholds": thresholds,
        "region_threshold": region_threshold_for(
            val_peaks[val_labels == 0], config.region_threshold
        ),
        "train_config": config.to_dict(),
        "training_data": {
            "hash": data_hash(train_items),
            "validation_hash": data_hash(val_items),
            "train_count": len(train_items),
            "validation_count": len(val_items),
            "defect_types": sorted({i.defect_type for i in train_items if i.label == "defect"}),
        },
        "metrics": {**metrics, "best_epoch": best_epoch, "epochs": len(history), "steps": step},
        "training_seconds": round(time.monotonic() - started, 1),
        "stopped_because": stopped_because,
        "library_versions": {
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "device": str(device),
    }
    report({"event": "done", "metrics": metadata["metrics"], "thresholds": thresholds})
    return TrainResult(trainer.model.cpu(), metadata, history, stopped_because)
