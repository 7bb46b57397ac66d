import io

import numpy as np
import pytest
import torch
from PIL import Image

from vision.artifacts import load_artifact
from vision.inference import Predictor, heatmap_regions
from vision.model import images_to_tensor
from vision.synth import synth_phone


def test_prediction_has_score_verdict_regions_and_heatmap(tiny_artifact):
    predictor = Predictor.from_artifact(tiny_artifact, threads=1)
    image = synth_phone(seed=1, size=(128, 72), defect_types=["scratch"]).image
    [prediction] = predictor.predict([image])
    assert 0.0 <= prediction.score <= 1.0
    assert prediction.verdict == predictor.verdict_for(prediction.score)
    assert prediction.heatmap.shape == (9, 16)
    for region in prediction.regions:
        x0, y0, x1, y1 = region.box
        assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 72
    overlay = Image.open(io.BytesIO(prediction.heatmap_png(image)))
    assert overlay.size == (128, 72)
    data = prediction.to_dict()
    assert set(data) == {"score", "verdict", "regions"}


def test_verdict_follows_the_artifact_thresholds(tiny_artifact):
    predictor = Predictor.from_artifact(tiny_artifact)
    predictor.pass_threshold, predictor.fail_threshold = 0.3, 0.7
    assert predictor.verdict_for(0.29) == "pass"
    assert predictor.verdict_for(0.3) == "uncertain"
    assert predictor.verdict_for(0.69) == "uncertain"
    assert predictor.verdict_for(0.7) == "fail"


def test_batches_of_mixed_sizes_keep_their_order(tiny_artifact):
    predictor = Predictor.from_artifact(tiny_artifact)
    small = synth_phone(seed=2, size=(64, 36)).image
    large = synth_phone(seed=3, size=(128, 72)).image
    together = predictor.predict([large, small, large])
    alone = [predictor.predict([image])[0] for image in (large, small, large)]
    assert [p.heatmap.shape for p in together] == [(9, 16), (5, 8), (9, 16)]
    for a, b in zip(together, alone, strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-5)


def test_folded_batchnorm_serves_the_same_numbers_as_the_trained_model(tiny_artifact):
    loaded = load_artifact(tiny_artifact)
    predictor = Predictor.from_artifact(tiny_artifact)
    image = synth_phone(seed=4, size=(128, 72)).image
    with torch.no_grad():
        _, image_logit = loaded.model(images_to_tensor([image]))
    assert predictor.predict([image])[0].score == pytest.approx(
        torch.sigmoid(image_logit).item(), abs=1e-5
    )


def test_wrong_array_is_refused(tiny_artifact):
    predictor = Predictor.from_artifact(tiny_artifact)
    with pytest.raises(ValueError, match="expected \\(H, W, 3\\) uint8"):
        predictor.predict([np.zeros((10, 10), dtype=np.uint8)])


def test_hot_cells_become_boxes_and_polygons_in_image_pixels():
    heatmap = np.zeros((9, 16), dtype=np.float32)
    heatmap[2, 3:6] = 0.9  # a horizontal stroke, three cells long
    heatmap[7, 14] = 0.6  # a lone spot near the corner
    regions = heatmap_regions(heatmap, stride=8, image_size=(125, 70), threshold=0.5)
    assert [r.box for r in regions] == [(24, 16, 48, 24), (112, 56, 120, 64)]
    assert regions[0].score == pytest.approx(0.9)
    assert sorted(regions[0].polygon) == [(24, 16), (24, 24), (48, 16), (48, 24)]


def test_a_failing_phone_always_points_somewhere(tiny_artifact):
    predictor = Predictor.from_artifact(tiny_artifact)
    predictor.pass_threshold = predictor.fail_threshold = 0.0  # everything fails
    predictor.region_threshold = 1.01  # and no cell passes the region threshold
    [prediction] = predictor.predict([synth_phone(seed=5, size=(128, 72)).image])
    assert prediction.verdict == "fail"
    assert prediction.regions
