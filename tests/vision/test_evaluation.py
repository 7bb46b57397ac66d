"""evaluate(): the region figures that tell whether outlining more costs false alarms."""

import numpy as np

from vision.datasets import Item
from vision.evaluation import evaluate
from vision.inference import ImagePrediction, Region


class _FixedPredictor:
    """Returns a prepared prediction per image, so the bookkeeping can be checked exactly."""

    pass_threshold = 0.4
    fail_threshold = 0.6
    region_threshold = 0.3

    def __init__(self, predictions):
        self._predictions = iter(predictions)

    def predict(self, images):
        return [next(self._predictions) for _ in images]


def _prediction(score, boxes):
    regions = [Region(box=box, polygon=[], score=0.9) for box in boxes]
    verdict = "fail" if score >= 0.6 else "pass" if score < 0.4 else "uncertain"
    heatmap = np.zeros((4, 4), dtype=np.float32)
    return ImagePrediction(score, verdict, regions, heatmap, image_size=(32, 32))


def test_regions_on_clean_images_and_beside_defects_are_counted():
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    scratch = np.zeros((32, 32), dtype=bool)
    scratch[10, 4:20] = True
    items = [
        Item(label="defect", image=image, mask=scratch, boxes=((4, 10, 20, 11),)),
        Item(label="ok", image=image, mask=np.zeros((32, 32), dtype=bool)),
        Item(label="ok", image=image, mask=np.zeros((32, 32), dtype=bool)),
    ]
    predictor = _FixedPredictor(
        [
            _prediction(0.9, [(0, 8, 16, 16), (24, 24, 32, 32)]),  # one on it, one beside it
            _prediction(0.1, [(0, 0, 8, 8)]),  # a clean phone with a region
            _prediction(0.1, []),
        ]
    )
    metrics = evaluate(predictor, items).metrics
    assert metrics["region_recall"] == 1.0
    assert metrics["regions_off_defect"] == 0.5
    assert metrics["clean_images_with_regions"] == 0.5
