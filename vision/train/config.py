"""Training settings, the progress and stop callbacks, and the errors training raises."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from vision.model import ModelConfig

ProgressCallback = Callable[[dict[str, Any]], None]
StopCallback = Callable[[], bool]


class TrainingCancelled(Exception):
    """should_stop() said stop: no model is produced."""


class TrainingDataError(ValueError):
    """The items cannot train a model (e.g. no defect or no ok example)."""


@dataclass(frozen=True)
class TrainConfig:
    # Settings left None are chosen from the data at the start of training (vision.train.recipe:
    # rotate, scale_jitter, patience, max_epochs); the choice and why go into the metadata.
    minutes: float = 4.0
    max_epochs: int | None = None
    steps_per_epoch: int = 100
    batch_size: int = 12
    crop: int = 192
    learning_rate: float = 4e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.2
    patience: int | None = None
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
    # Masks covering more than this share of their image are trained as bags (see samples.Sample).
    coarse_mask_fraction: float = 0.02
    mine_images: int = 48
    # Quarter turns in augmentation (flips always). Off for surfaces whose texture has a fixed
    # direction (ground magnetic tiles), where a turned crop shows a surface that never occurs.
    rotate: bool | None = None
    # Serve the mean score of the image and its flips (vision.model.FLIP_VIEWS): four passes
    # of the network. None: chosen from the image size (vision.train.recipe).
    test_time_flips: bool | None = None
    # Zoom augmentation: each batch is cropped at crop * exp(U(-j, j)) and resized to `crop`,
    # for parts photographed at varying distances or downscaled (0: off).
    scale_jitter: float | None = None
    # Clean images whose statistics, embeddings and scores go into the artifact as the drift
    # monitoring's reference (see vision.reference); 0: none.
    reference_images: int = 300
    # Threads for the network; None: all cores but one, which draws the next batch meanwhile.
    threads: int | None = None
    device: str = "auto"
    # The forward pass of training: "auto" takes bfloat16 where the device computes it natively
    # (a CPU with AMX or AVX-512 BF16, a CUDA GPU that has it), else float32; "float32" or
    # "bfloat16" to insist. Weights, the loss, validation and serving stay float32.
    precision: str = "auto"
    max_steps: int | None = None  # hard cap for tests and smoke runs
    # New models outline defect areas (ModelConfig.outline); older artifacts load without it.
    model: ModelConfig = field(default_factory=lambda: ModelConfig(outline=True))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["model"] = self.model.to_dict()
        return data
