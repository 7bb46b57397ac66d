"""The training run: data checks, epochs within a time budget, early stopping, metadata."""

from __future__ import annotations

import contextlib
import copy
import math
import os
import platform
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vision.artifacts import save_artifact
from vision.datasets import Item, split_items
from vision.inference import Predictor
from vision.model import NORMALIZATION, ScratchNet
from vision.reference import reference_sample
from vision.train.calibration import (
    calibrate_thresholds,
    outline_threshold_for,
    region_threshold_for,
    validation_metrics,
)
from vision.train.config import (
    ProgressCallback,
    StopCallback,
    TrainConfig,
    TrainingCancelled,
    TrainingDataError,
)
from vision.train.good_only import synthesize
from vision.train.recipe import choose as choose_recipe
from vision.train.samples import Sample, data_hash, load_sample
from vision.train.trainer import Batch, Trainer


@dataclass
class TrainResult:
    model: ScratchNet
    metadata: dict[str, Any]
    history: list[dict[str, Any]]
    stopped_because: str

    def save(self, path: str | Path) -> str:
        return save_artifact(path, self.model, self.metadata)


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
    device = _prepare_torch(config)

    items = list(items)
    kind = _kind(items, val_items)
    train_items, val_items = _split(items, val_items, config, kind)
    report({"event": "loading", "items": len(items)})
    samples = [load_sample(item, config.coarse_mask_fraction) for item in train_items]
    val_samples = [load_sample(item, config.coarse_mask_fraction) for item in val_items]
    if kind == GOOD_ONLY:
        val_samples = _with_synthetic_defects(val_samples, seed=config.seed)
    config, recipe = choose_recipe(config, samples, validation_count=len(val_samples))
    recipe["kind"] = kind
    report({"event": "recipe", **recipe})
    budget = _Budget.start(config, started)

    trainer = Trainer(samples, config, device, synthetic_defects=kind == GOOD_ONLY)
    fit = _fit(trainer, val_samples, budget, report, stop)
    if fit.best_state is not None:
        trainer.model.load_state_dict(fit.best_state)
    # Calibrated on the scores as served: with test-time flips when the recipe chose them.
    val_scores, val_peaks = trainer.scores(val_samples, flips=config.test_time_flips)
    outline = _outline_calibration(trainer, val_samples)
    trainer.model.eval()  # scores() leaves the model in training mode
    model = trainer.model.cpu()
    metadata = _metadata(
        config=config,
        device=device,
        budget=budget,
        fit=fit,
        samples=samples,
        train_items=train_items,
        val_items=val_items,
        val_labels=_labels(val_samples),
        val_scores=val_scores,
        val_peaks=val_peaks,
        reference=_reference(model, train_items, val_items, config),
        recipe=recipe,
        outline=outline,
    )
    metadata["precision"] = trainer.precision
    report({"event": "done", "metrics": metadata["metrics"], "thresholds": metadata["thresholds"]})
    return TrainResult(model, metadata, fit.history, fit.stopped_because)


@dataclass(frozen=True)
class _Budget:
    """When training started and how much it may do: seconds and optimiser steps."""

    started: float
    seconds: float
    total_steps: int

    @classmethod
    def start(cls, config: TrainConfig, started: float | None = None) -> _Budget:
        """The budget of a config whose settings are chosen; `started` when training began
        (loading counts against the time)."""
        total_steps = config.max_epochs * config.steps_per_epoch
        if config.max_steps is not None:
            total_steps = min(total_steps, config.max_steps)
        return cls(started or time.monotonic(), config.minutes * 60, total_steps)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def progress(self, step: int) -> float:
        """How far training is: by steps or by the time budget, whichever runs out first."""
        return min(1.0, max(step / self.total_steps, self.elapsed() / self.seconds))


@dataclass
class _Fit:
    """What the epochs produced: their history and the best epoch's weights."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_state: dict[str, Any] | None = None
    best_epoch: int = 0
    stopped_because: str = "max_epochs"
    steps: int = 0


def _prepare_torch(config: TrainConfig) -> torch.device:
    """Threads and seeds; the seeds before anything draws, so a seed gives the same weights."""
    torch.set_num_threads(config.threads or _compute_threads())
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.device)


def _compute_threads() -> int:
    """Threads for the network when the config leaves it open: every core this process may run
    on but one, which draws the next batch meanwhile (Trainer.prefetched). Two threads on the
    network beside the drawing thread on 2 cores ran a step in 70 ms, one in 37 ms."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


SUPERVISED, GOOD_ONLY = "supervised", "good_only"
# A good-only model needs enough good images to tell the surface from an anomaly.
GOOD_ONLY_MIN_IMAGES = 20


def _kind(items: list[Item], val_items: Sequence[Item] | None) -> str:
    """`good_only` when no item is a defect (a new line: defects are synthesised on the good
    images), else `supervised`."""
    everything = [*items, *(val_items or [])]
    if any(item.label == "defect" for item in everything):
        return SUPERVISED
    if len(everything) < GOOD_ONLY_MIN_IMAGES:
        raise TrainingDataError(
            f"no defect is labelled, and {len(everything)} good images are too few to train a "
            f"model on good images only (at least {GOOD_ONLY_MIN_IMAGES})"
        )
    return GOOD_ONLY


def _with_synthetic_defects(samples: list[Sample], *, seed: int) -> list[Sample]:
    """Good validation images, and each again with a synthetic defect (a fixed draw), so a
    good-only model's epochs are compared on the same task it trains on."""
    rng = random.Random(seed + 7919)
    defects = []
    for index, sample in enumerate(samples):
        other = samples[(index + 1) % len(samples)].image
        image, mask = synthesize(sample.image, rng, other=other)
        defects.append(Sample(image, 1, mask, (), np.argwhere(mask)))
    return [*samples, *defects]


def _split(
    items: list[Item], val_items: Sequence[Item] | None, config: TrainConfig, kind: str
) -> tuple[list[Item], list[Item]]:
    """Training and validation items, each with both labels (good images only for a
    good-only model) or TrainingDataError."""
    if val_items is None:
        train_items, val_items = split_items(
            items, fractions=(1 - config.val_fraction, config.val_fraction), seed=config.seed
        )
    else:
        train_items, val_items = items, list(val_items)
    wanted = {"ok"} if kind == GOOD_ONLY else {"ok", "defect"}
    for name, group in (("training", train_items), ("validation", val_items)):
        labels = {item.label for item in group}
        if labels != wanted:
            raise TrainingDataError(
                f"the {name} split needs {' and '.join(sorted(wanted))} images; it has "
                f"{sorted(labels) or 'none'} ({len(group)} items)"
            )
    return train_items, val_items


def _outline_calibration(
    trainer: Trainer, val_samples: Sequence[Sample]
) -> tuple[float, float] | None:
    """The outline level and its validation pixel IoU, on the validation images whose pixels
    are all known; None without an outline head or a located validation defect."""
    if trainer.model.outline is None:
        return None
    known = [sample for sample in val_samples if sample.pixel_mask is not None]
    masks = [sample.pixel_mask for sample in known]
    return outline_threshold_for(trainer.outlines(known), masks, trainer.stride)


def _labels(samples: Sequence[Sample]) -> np.ndarray:
    return np.array([s.label for s in samples])


def _fit(
    trainer: Trainer,
    val_samples: Sequence[Sample],
    budget: _Budget,
    report: ProgressCallback,
    stop: StopCallback,
) -> _Fit:
    """Epochs until the step cap, the time budget or `patience` epochs without a better
    validation score; keeps the best epoch's weights."""
    config = trainer.config
    optimizer = torch.optim.AdamW(
        trainer.model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    _set_learning_rate(optimizer, config.learning_rate, 0.0)
    val_labels = _labels(val_samples)
    fit = _Fit()
    best_key = (-math.inf, -math.inf)
    trainer.model.train()
    for epoch in range(1, config.max_epochs + 1):
        if epoch > 1:
            trainer.mine_hard_examples()
        epoch_losses = _train_epoch(trainer, optimizer, fit, epoch, budget, report, stop)
        val_scores, _ = trainer.scores(val_samples)
        metrics = validation_metrics(val_labels, val_scores)
        entry = {
            "epoch": epoch,
            "step": fit.steps,
            "train_loss": float(np.mean(epoch_losses)),
            **metrics,
            "elapsed_s": budget.elapsed(),
        }
        fit.history.append(entry)
        report({"event": "epoch", **entry, "total_steps": budget.total_steps})
        # Ranking matters most (AUROC); the loss breaks ties once AUROC saturates at 1.0.
        key = (metrics.get("val_auroc", 0.0), -metrics["val_loss"])
        if key > best_key:
            best_key, fit.best_epoch = key, epoch
            fit.best_state = copy.deepcopy(trainer.model.state_dict())
        reason = _stop_reason(config, budget, fit, epoch)
        if reason is not None:
            fit.stopped_because = reason
            break
    return fit


def _train_epoch(
    trainer: Trainer,
    optimizer: torch.optim.Optimizer,
    fit: _Fit,
    epoch: int,
    budget: _Budget,
    report: ProgressCallback,
    stop: StopCallback,
) -> list[float]:
    """Up to steps_per_epoch optimiser steps (fewer when the step cap or the time budget runs
    out), counted in `fit.steps`; the losses of the steps taken."""
    config = trainer.config
    losses: list[float] = []
    steps = min(config.steps_per_epoch, budget.total_steps - fit.steps)
    with contextlib.closing(trainer.prefetched(steps)) as batches:
        for batch in batches:
            if stop():
                raise TrainingCancelled(f"cancelled at epoch {epoch}, step {fit.steps}")
            losses.append(_train_step(trainer, optimizer, batch, fit, budget))
            elapsed = budget.elapsed()
            report(
                {
                    "event": "step",
                    "epoch": epoch,
                    "step": fit.steps,
                    "total_steps": budget.total_steps,
                    "loss": losses[-1],
                    "elapsed_s": elapsed,
                    "fraction": budget.progress(fit.steps),
                }
            )
            if elapsed >= budget.seconds:
                break
    return losses


def _train_step(
    trainer: Trainer, optimizer: torch.optim.Optimizer, batch: Batch, fit: _Fit, budget: _Budget
) -> float:
    """One optimiser step on `batch`; the learning rate follows the progress made."""
    loss = trainer.batch_loss(batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    fit.steps += 1
    _set_learning_rate(optimizer, trainer.config.learning_rate, budget.progress(fit.steps))
    return loss.item()


def _stop_reason(config: TrainConfig, budget: _Budget, fit: _Fit, epoch: int) -> str | None:
    """Why training ends after this epoch, or None to go on."""
    if fit.steps >= budget.total_steps:
        return "max_steps" if config.max_steps is not None else "max_epochs"
    if budget.elapsed() >= budget.seconds:
        return "time_budget"
    if epoch - fit.best_epoch >= config.patience:
        return "early_stopping"
    return None


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


# Below this many clean validation images the reference is topped up from the training split.
REFERENCE_MIN_CLEAN = 100


def _reference(
    model: ScratchNet,
    train_items: Sequence[Item],
    val_items: Sequence[Item],
    config: TrainConfig,
) -> dict[str, Any] | None:
    """The drift reference: clean validation images (unseen, so their scores are what a line
    will see), or clean training images when there is no validation split; scored by the
    serving path itself, so the embeddings and scores match what each capture gets."""
    if config.reference_images <= 0:
        return None
    items, source = (
        (val_items, "validation images") if val_items else (train_items, "training images")
    )
    clean = [item for item in items if item.label == "ok"]
    if val_items and len(clean) < min(REFERENCE_MIN_CLEAN, config.reference_images):
        # A small, defect-rich validation split leaves too few clean images for the drift
        # tests (they need 30 a side): top up with clean training images. Their statistics
        # and embeddings describe the scene as well; only their scores are optimistic.
        clean_train = [item for item in train_items if item.label == "ok"]
        items = clean + clean_train[: config.reference_images - len(clean)]
        source = "validation and training images"
    predictor = Predictor(
        model, {"normalization": NORMALIZATION, "test_time_flips": config.test_time_flips}
    )
    return reference_sample(
        predictor, items, limit=config.reference_images, seed=config.seed, source=source
    )


def _metadata(
    *,
    config: TrainConfig,
    device: torch.device,
    budget: _Budget,
    fit: _Fit,
    samples: Sequence[Sample],
    train_items: Sequence[Item],
    val_items: Sequence[Item],
    val_labels: np.ndarray,
    val_scores: np.ndarray,
    val_peaks: np.ndarray,
    reference: dict[str, Any] | None,
    recipe: dict[str, Any],
    outline: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """The artifact's metadata: how the model was made, on what, its calibration and (unless
    disabled) the drift reference."""
    thresholds = calibrate_thresholds(
        val_labels,
        val_scores,
        target_recall=config.target_recall,
        target_precision=config.target_precision,
    )
    metrics = validation_metrics(val_labels, val_scores)
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
        "kind": recipe["kind"],
        "test_time_flips": config.test_time_flips,
        "recipe": recipe,
        "train_config": config.to_dict(),
        "training_data": _training_data(train_items, val_items),
        "metrics": {
            **metrics,
            "best_epoch": fit.best_epoch,
            "epochs": len(fit.history),
            "steps": fit.steps,
        },
        "training_seconds": round(budget.elapsed(), 1),
        "stopped_because": fit.stopped_because,
        "library_versions": {
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "device": str(device),
    }
    if outline is not None:
        metadata["outline_threshold"], metadata["metrics"]["val_pixel_iou"] = outline
    if reference is not None:
        metadata["reference"] = reference
    return metadata


def _training_data(train_items: Sequence[Item], val_items: Sequence[Item]) -> dict[str, Any]:
    """Which items the model was trained and validated on: hashes of both lists and counts."""
    return {
        "hash": data_hash(train_items),
        "validation_hash": data_hash(val_items),
        "train_count": len(train_items),
        "validation_count": len(val_items),
        "defect_types": sorted({i.defect_type for i in train_items if i.label == "defect"}),
    }
