import numpy as np
import onnxruntime
import pytest
import torch

from vision.export import export_onnx, export_torchscript
from vision.inference import Predictor
from vision.synth import synth_phone


def _phone_input():
    image = synth_phone(seed=11, size=(128, 72)).image
    return image, torch.from_numpy(image).permute(2, 0, 1)[None].float()


def test_torchscript_matches_the_served_model(tiny_artifact, tmp_path):
    report = export_torchscript(tiny_artifact, tmp_path / "m.ts")
    assert report.parity_ok and report.max_abs_diff <= 1e-4
    image, tensor = _phone_input()
    _, score = torch.jit.load(str(tmp_path / "m.ts"))(tensor)
    assert score.item() == pytest.approx(
        Predictor.from_artifact(tiny_artifact).predict([image])[0].score, abs=1e-4
    )


def test_onnx_matches_the_served_model(tiny_artifact, tmp_path):
    report = export_onnx(tiny_artifact, tmp_path / "m.onnx")
    assert report.parity_ok
    image, tensor = _phone_input()
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
    heatmap, score = session.run(None, {"images": tensor.numpy().astype(np.float32)})
    assert heatmap.shape == (1, 1, 9, 16)
    assert float(score[0]) == pytest.approx(
        Predictor.from_artifact(tiny_artifact).predict([image])[0].score, abs=1e-4
    )


def test_a_model_served_with_test_time_flips_exports_its_served_score(flips_artifact, tmp_path):
    """The edge model gives the score the server gives: the flips are in the graph."""
    assert export_onnx(flips_artifact, tmp_path / "m.onnx").parity_ok
    assert export_torchscript(flips_artifact, tmp_path / "m.ts").parity_ok
    image, tensor = _phone_input()
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
    heatmap, score = session.run(None, {"images": tensor.numpy().astype(np.float32)})
    served = Predictor.from_artifact(flips_artifact).predict([image])[0]
    assert heatmap.shape == (1, 1, 9, 16)
    assert float(score[0]) == pytest.approx(served.score, abs=1e-4)
    np.testing.assert_allclose(heatmap[0, 0], served.heatmap, rtol=0, atol=1e-4)
