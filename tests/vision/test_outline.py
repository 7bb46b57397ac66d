"""The outline head: an area read-out beside the score that never changes the score."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from vision.artifacts import load_artifact, save_artifact
from vision.datasets import Item
from vision.evaluation import evaluate
from vision.inference import OUTLINE_COLOUR, ImagePrediction, Predictor, mask_edge, upsample_cells
from vision.model import ModelConfig, ScratchNet, images_to_tensor
from vision.synth import synth_phone
from vision.train.calibration import outline_threshold_for
from vision.train.losses import cell_shares, outline_loss


def test_the_outline_loss_trains_its_head_and_the_shared_features_not_the_score_head():
    model = ScratchNet(ModelConfig(outline=True))
    images = torch.randn(2, 3, 32, 32)
    _, _, logits = model.forward_with_outline(images)
    outline_loss(logits, torch.ones_like(logits)).backward()
    assert all(p.grad is not None for p in model.features.parameters())
    assert all(p.grad is None for p in model.head.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.outline.parameters())


def test_a_model_without_an_outline_head_says_so():
    model = ScratchNet()
    assert model.outline is None
    with pytest.raises(ValueError, match="no outline head"):
        model.forward_with_outline(torch.zeros(1, 3, 16, 16))


def test_cell_shares_count_the_pixels_inside_the_image():
    mask = np.zeros((12, 16), dtype=bool)
    mask[0:4, 0:8] = True  # half of the first cell
    mask[8:12, 8:16] = True  # the whole of the cut-off last cell
    shares = cell_shares(torch.from_numpy(mask)[None], 8)[0, 0]
    assert shares.shape == (2, 2)
    assert shares[0, 0] == pytest.approx(0.5)
    assert shares[1, 1] == pytest.approx(1.0)
    assert shares[0, 1] == 0 and shares[1, 0] == 0


def test_upsampled_cells_follow_the_cell_grid_and_crop_the_padding():
    cells = np.zeros((2, 3), dtype=np.float32)
    cells[0, 0] = 1.0
    full = upsample_cells(cells, (13, 20), 8)
    assert full.shape == (13, 20)
    assert full[0, 0] == pytest.approx(1.0)  # inside the hot cell
    assert full[12, 19] == pytest.approx(0.0)
    assert 0.0 < full[4, 8] < 1.0  # between the cell centres: blended
    # 10x13 px at stride 8 is 2x2 cells: the grid is the stride's, not the shape's (7 px).
    small = upsample_cells(np.array([[1.0, 0.0], [0.0, 0.0]], np.float32), (10, 13), 8)
    assert small.shape == (10, 13) and small[:4, :4].min() == pytest.approx(1.0)
    # Pixel 7's centre sits 7.5 / 8 - 0.5 = 0.4375 of the way to the next cell's centre.
    assert small[0, 7] == pytest.approx(1 - 0.4375)


def test_the_outline_level_is_the_one_with_the_best_validation_iou():
    truth = np.zeros((16, 16), dtype=bool)
    truth[:8, :8] = True
    cells = np.array([[0.9, 0.3], [0.3, 0.05]], dtype=np.float32)
    clean = np.zeros((16, 16), dtype=bool)
    level, iou = outline_threshold_for([cells, np.full((2, 2), 0.2, np.float32)], [truth, clean], 8)
    # Any level above the clean image's 0.2 and the neighbours' blend, below the hot cell's
    # centre: the exact square is out of reach of a blended outline, so IoU is high, not 1.
    assert 0.5 <= level <= 0.75
    assert iou > 0.5
    assert outline_threshold_for([cells], [clean], 8) is None


def test_the_outline_is_drawn_on_the_overlay():
    outline = np.zeros((2, 2), dtype=np.float32)
    outline[0, 0] = 1.0
    prediction = ImagePrediction(
        score=0.9,
        verdict="fail",
        regions=[],
        heatmap=np.zeros((2, 2), np.float32),
        image_size=(16, 16),
        outline=outline,
        outline_threshold=0.5,
    )
    mask = prediction.outline_mask()
    assert mask[2, 2] and not mask[15, 15]
    edge = mask_edge(mask)
    assert edge.any() and not edge[2, 2]  # the boundary, not the inside
    thick = mask_edge(mask, width=2)
    assert (thick & edge).sum() == edge.sum() and thick.sum() > edge.sum() and not thick[0, 0]
    overlay = np.asarray(Image.open(io.BytesIO(prediction.heatmap_png())))
    assert tuple(overlay[edge][0]) == tuple(int(c) for c in OUTLINE_COLOUR)
    assert tuple(overlay[2, 2]) == (0, 0, 0)


def test_served_outline_matches_the_trained_model_and_masks_the_evaluation(tmp_path):
    torch.manual_seed(0)
    model = ScratchNet(ModelConfig(outline=True)).eval()
    with torch.no_grad():
        model.outline[-1].bias.fill_(0.0)  # half the cells over 0.5, as a trained head might
        for norm in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            norm.running_mean.uniform_(-0.1, 0.1)
            norm.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "outline.pt"
    save_artifact(path, model, {"outline_threshold": 0.5, "normalization": None})
    loaded = load_artifact(path)
    assert loaded.model.config.outline
    predictor = Predictor(loaded.model, loaded.metadata)
    image = synth_phone(seed=3, size=(64, 40)).image
    [prediction] = predictor.predict([image])
    with torch.no_grad():
        _, _, eager = loaded.model.forward_with_outline(images_to_tensor([image]))
    assert np.allclose(prediction.outline, torch.sigmoid(eager)[0, 0].numpy(), atol=1e-5)
    mask = prediction.outline_mask()
    assert mask.shape == (40, 64) and 0 < mask.mean() < 1
    item = Item(label="defect", image=image, mask=mask)
    assert evaluate(predictor, [item]).metrics["pixel_iou"] == pytest.approx(1.0)


def test_a_model_config_from_before_the_outline_head_builds_and_serves_without_one():
    written_before = {"widths": [8, 16, 32], "context_dilations": [1, 2, 4], "top_k": 2}
    model = ScratchNet(ModelConfig.from_dict(written_before))
    assert model.outline is None
    [prediction] = Predictor(model, {}).predict([np.zeros((16, 16, 3), np.uint8)])
    assert prediction.outline is None and prediction.outline_mask() is None


def test_a_trained_model_outlines_with_the_level_calibrated_on_its_validation_masks(
    tiny_artifact,
):
    predictor = Predictor.from_artifact(tiny_artifact)
    metadata = predictor.metadata
    assert metadata["model_config"]["outline"]
    assert 0.1 <= metadata["outline_threshold"] <= 0.9
    assert 0.0 <= metadata["metrics"]["val_pixel_iou"] <= 1.0
    image = synth_phone(seed=9, size=(128, 72), defect_types=["scratch"]).image
    [prediction] = predictor.predict([image])
    assert prediction.outline.shape == prediction.heatmap.shape
    assert prediction.outline_threshold == metadata["outline_threshold"]


def test_regions_off_the_outline_are_left_out_but_the_best_one_stays():
    from vision.inference import Region, regions_on_outline

    def region(box, score):
        return Region(box=box, polygon=[], score=score)

    outline = np.zeros((4, 6), dtype=np.float32)
    outline[1, 4] = 0.8  # the area read-out sees a defect in this cell only
    best_speck = region((0, 0, 8, 8), 0.9)  # off the outline, but the hottest: kept
    on_area = region((28, 4, 44, 16), 0.6)  # reaches into cell (1, 4)
    speck = region((8, 24, 16, 32), 0.5)  # a reflection: dropped
    kept = regions_on_outline([best_speck, on_area, speck], outline, 0.5, 8)
    assert kept == [best_speck, on_area]
    assert regions_on_outline([], outline, 0.5, 8) == []
