import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from vision.artifacts import load_artifact, save_artifact
from vision.inference import Predictor, heatmap_regions, inference_device
from vision.model import ConvReLUChain, ScratchNet, centred_images_to_tensor, images_to_tensor
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


def test_the_process_device_serves_the_numbers_of_the_cpu(tiny_artifact):
    """`auto` is CUDA where the process has it: scores, heatmaps and embeddings must match the
    CPU's (on a CPU-only machine both are the CPU, and the device plumbing still runs)."""
    cpu = Predictor.from_artifact(tiny_artifact, device="cpu")
    auto = Predictor.from_artifact(tiny_artifact, device=inference_device("auto"))
    assert auto.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert next(auto._net.parameters()).device.type == auto.device.type
    images = [synth_phone(seed=seed, size=(128, 72)).image for seed in (5, 6)]
    for a, b in zip(cpu.predict(images), auto.predict(images), strict=True):
        assert b.score == pytest.approx(a.score, abs=1e-4)
        assert np.abs(b.heatmap - a.heatmap).max() <= 1e-4
        assert np.abs(b.embedding - a.embedding).max() <= 1e-3
        assert [r.box for r in b.regions] == [r.box for r in a.regions]


def test_an_unknown_device_is_refused_at_load(tiny_artifact):
    with pytest.raises(RuntimeError):
        Predictor.from_artifact(tiny_artifact, device="nonsense")


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


def _pre_embedding_path(predictor, image):
    """Score and heatmap as predict computed them before embeddings: the whole folded net at
    once, cropped to the image, sigmoid of the mean of the top-k cells."""
    batch = centred_images_to_tensor([image], mean=predictor._mean, stride=predictor.stride)
    with torch.inference_mode():
        logits = predictor._net(batch)[:, 0]
    height, width = image.shape[:2]
    logits = logits[:, : -(-height // predictor.stride), : -(-width // predictor.stride)]
    top = logits.flatten(1).topk(min(predictor.top_k, logits[0].numel()), dim=1).values
    return float(torch.sigmoid(top.mean(dim=1))[0]), torch.sigmoid(logits)[0].numpy(), logits


@pytest.mark.parametrize("size", [(128, 72), (100, 61)])  # 100x61 is padded up to the stride
def test_embeddings_leave_scores_and_heatmaps_as_they_were(tiny_artifact, size):
    predictor = Predictor.from_artifact(tiny_artifact)
    image = synth_phone(seed=6, size=size, defect_types=["scratch"]).image
    score, heatmap, logits = _pre_embedding_path(predictor, image)
    [prediction] = predictor.predict([image])
    assert prediction.score == pytest.approx(score, abs=1e-6)
    np.testing.assert_allclose(prediction.heatmap, heatmap, rtol=0, atol=1e-6)
    torch.testing.assert_close(predictor.heatmap_logits([image]), logits, rtol=0, atol=1e-6)


def test_embedding_is_the_mean_of_each_last_feature_channel(tiny_artifact):
    loaded = load_artifact(tiny_artifact)
    predictor = Predictor.from_artifact(tiny_artifact)
    image = synth_phone(seed=7, size=(128, 72)).image
    [prediction] = predictor.predict([image])
    assert prediction.embedding.dtype == np.float32
    assert prediction.embedding.shape == (loaded.model.config.widths[-1],)  # 32 by default
    with torch.no_grad():
        features = loaded.model.features(images_to_tensor([image]))
    np.testing.assert_allclose(prediction.embedding, features.mean(dim=(2, 3))[0], atol=1e-4)


def test_embeddings_are_deterministic_alone_or_in_a_batch(tiny_artifact):
    predictor = Predictor.from_artifact(tiny_artifact)
    images = [synth_phone(seed=seed, size=(128, 72)).image for seed in (8, 9)]
    first = [p.embedding for p in predictor.predict(images)]
    again = [p.embedding for p in predictor.predict(images)]
    alone = [predictor.predict([image])[0].embedding for image in images]
    for a, b, c in zip(first, again, alone, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, atol=1e-5)
    assert np.abs(first[0] - first[1]).max() > 1e-4  # two phones, two embeddings


def test_embedding_list_is_rounded_json_and_to_dict_is_unchanged(tiny_artifact):
    predictor = Predictor.from_artifact(tiny_artifact)
    [prediction] = predictor.predict([synth_phone(seed=10, size=(128, 72)).image])
    values = prediction.embedding_list()
    assert json.loads(json.dumps(values)) == values
    assert values == [round(float(v), 4) for v in prediction.embedding]
    assert prediction.embedding_list(decimals=2) == [round(float(v), 2) for v in values]
    assert set(prediction.to_dict()) == {"score", "verdict", "regions"}


def test_a_darker_scene_moves_the_embeddings(tiny_artifact):
    """A lighting change on the line must show in the embeddings, far beyond the spread between
    phones under the same light (standardised on the normal phones, as monitoring does)."""
    predictor = Predictor.from_artifact(tiny_artifact)
    phones = [synth_phone(seed=seed, size=(128, 72), defect_types=[]).image for seed in range(12)]
    darker = [(image * 0.35).astype(np.uint8) for image in phones]
    normal = np.stack([p.embedding for p in predictor.predict(phones)])
    dark = np.stack([p.embedding for p in predictor.predict(darker)])
    centre, spread = normal.mean(axis=0), normal.std(axis=0) + 1e-6
    normal_z, dark_z = (normal - centre) / spread, (dark - centre) / spread
    assert np.abs(dark_z.mean(axis=0)).max() > 3.0
    distance_normal = np.median(np.linalg.norm(normal_z, axis=1))
    distance_dark = np.median(np.linalg.norm(dark_z, axis=1))
    assert distance_dark > 2 * distance_normal


def test_an_artifact_without_a_reference_serves_with_reference_none(tmp_path):
    path = tmp_path / "old.pt"
    save_artifact(path, ScratchNet(), {"thresholds": {"pass": 0.3, "fail": 0.7}})
    predictor = Predictor.from_artifact(path)
    assert predictor.reference is None
    [prediction] = predictor.predict([synth_phone(seed=11, size=(64, 36)).image])
    assert prediction.embedding.shape == (32,)


def test_served_layers_with_their_relus_fused_give_the_plain_layers_numbers(tiny_artifact):
    """On the CPU each served convolution runs with its ReLU in one oneDNN call (one pass over
    memory less); the heatmap is the plain layers' up to float rounding (oneDNN may pick
    another kernel for a small image)."""
    predictor = Predictor.from_artifact(tiny_artifact)
    assert isinstance(predictor._features, ConvReLUChain)
    image = synth_phone(seed=5, size=(256, 144)).image
    batch = centred_images_to_tensor([image], mean=predictor._mean, stride=predictor.stride)
    with torch.inference_mode():
        plain = predictor._head(predictor._net[:-1](batch))
        fused = predictor._head(predictor._features(batch))
    assert torch.allclose(plain, fused, rtol=0, atol=1e-5)


def test_test_time_flips_score_the_mean_of_the_views_and_draw_the_image_itself(
    flips_artifact, tmp_path
):
    """With test-time flips the score is the mean image logit of the image and its three
    flips; the heatmap, regions and embedding are the image's own, as without flips."""
    flipped = Predictor.from_artifact(flips_artifact)
    loaded = load_artifact(flips_artifact)
    assert flipped.test_time_flips and loaded.metadata["test_time_flips"] is True
    one_view = Predictor(loaded.model, {**loaded.metadata, "test_time_flips": False})
    image = synth_phone(seed=8, size=(100, 61), defect_types=["scratch"]).image  # padded
    [with_flips] = flipped.predict([image])
    [alone] = one_view.predict([image])
    views = [image, image[:, ::-1], image[::-1], image[::-1, ::-1]]
    batch = torch.cat(
        [images_to_tensor([np.ascontiguousarray(view)]) for view in views[:1]]
        + [images_to_tensor([image]).flip(dims) for dims in ((3,), (2,), (2, 3))]
    )
    with torch.no_grad():
        _, view_logits = loaded.model(batch)
    assert with_flips.score == pytest.approx(torch.sigmoid(view_logits.mean()).item(), abs=1e-5)
    assert with_flips.score != pytest.approx(alone.score, abs=1e-6)
    np.testing.assert_allclose(with_flips.heatmap, alone.heatmap, rtol=0, atol=1e-6)
    np.testing.assert_allclose(with_flips.embedding, alone.embedding, rtol=0, atol=1e-6)
    assert [r.box for r in with_flips.regions] == [r.box for r in alone.regions]
