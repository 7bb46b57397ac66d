"""Training: items in, a calibrated model out, with progress reports and cooperative cancel.

Supervision is whatever the item has. A pixel mask (synthetic phones, labelled tiles) gives
each heatmap cell a target. Boxes from inspectors say "some cell inside is defective, every
cell outside is clean" (multiple-instance learning per box). An image-level label alone says
"some cell is defective" for a defect and "no cell is" for an ok image.

Import from here; the modules are `loop` (train() and its steps), `config`, `samples` (items
loaded with their supervision), `crops` (cropping and augmentation), `losses`, `trainer` (the
model in training: batches, mining, scores), `mining` and `calibration` (thresholds).
"""

from vision.train.calibration import (
    CLEAN_IMAGES_WITH_REGIONS,
    REGION_THRESHOLD_RANGE,
    calibrate_thresholds,
    region_threshold_for,
)
from vision.train.config import (
    ProgressCallback,
    StopCallback,
    TrainConfig,
    TrainingCancelled,
    TrainingDataError,
)
from vision.train.loop import TrainResult, train
from vision.train.samples import data_hash

__all__ = [
    "CLEAN_IMAGES_WITH_REGIONS",
    "REGION_THRESHOLD_RANGE",
    "ProgressCallback",
    "StopCallback",
    "TrainConfig",
    "TrainResult",
    "TrainingCancelled",
    "TrainingDataError",
    "calibrate_thresholds",
    "data_hash",
    "region_threshold_for",
    "train",
]
