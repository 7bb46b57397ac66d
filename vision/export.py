"""Export to TorchScript and ONNX for edge devices, each checked against the eager model."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vision.artifacts import file_sha256, load_artifact
from vision.model import (
    FLIP_VIEWS,
    NORMALIZATION,
    ScratchNet,
    fold_for_inference,
    normalization_mean_255,
)

# Exported graphs take float32 RGB in 0..255, NCHW, height and width multiples of the stride,
# and return (heatmap probabilities (N, 1, H/stride, W/stride), image scores (N,)).
PARITY_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """The export failed or its output does not match the eager model."""


@dataclass(frozen=True)
class ExportReport:
    path: str
    format: str
    sha256: str
    max_abs_diff: float
    parity_ok: bool
    input_spec: str

    def to_dict(self) -> dict:
        return asdict(self)


def _normalization_tensors(normalization: dict) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(normalization["mean"]).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(normalization["std"]).view(1, 3, 1, 1) * 255.0
    return mean, std


class _Deployable(nn.Module):
    """The served model as one graph: heatmap and score, the score over the image and its
    flips when the artifact serves with test-time flips (as the server scores it)."""

    def __init__(self, model: ScratchNet, normalization: dict, *, flips: bool = False):
        super().__init__()
        self.net = fold_for_inference(model, normalization)
        self.top_k = model.config.top_k
        self.flips = flips
        mean = torch.tensor(normalization_mean_255(normalization)).view(1, 3, 1, 1)
        self.register_buffer("mean", mean)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        centred = images - self.mean
        count = centred.shape[0]
        if self.flips:
            centred = torch.cat([centred] + [centred.flip(d) for d in FLIP_VIEWS[1:]])
        logits = self.net(centred)
        flat = logits.flatten(1)
        image_logits = flat.topk(self.top_k, dim=1).values.mean(dim=1)
        if self.flips:
            image_logits = image_logits.reshape(len(FLIP_VIEWS), count).mean(dim=0)
        return torch.sigmoid(logits[:count]), torch.sigmoid(image_logits)


def _eager_reference(
    model: ScratchNet, normalization: dict, images: torch.Tensor, *, flips: bool = False
) -> tuple:
    """The unfused training-time model: what the export must reproduce."""
    mean, std = _normalization_tensors(normalization)
    normalised = (images - mean) / std
    with torch.inference_mode():
        logits, image_logits = model(normalised)
        if flips:
            views = [model(normalised.flip(dims))[1] for dims in FLIP_VIEWS[1:]]
            image_logits = torch.stack([image_logits, *views]).mean(dim=0)
    return torch.sigmoid(logits), torch.sigmoid(image_logits)


def _parity_input(stride: int, size: tuple[int, int]) -> torch.Tensor:
    width, height = size
    width, height = width - width % stride, height - height % stride
    generator = torch.Generator().manual_seed(0)
    return (torch.rand(2, 3, height, width, generator=generator) * 255.0).round()


def _max_diff(expected: tuple, actual: tuple) -> float:
    return max(
        float((torch.as_tensor(a) - e).abs().max()) for e, a in zip(expected, actual, strict=True)
    )


def _report(path: Path, fmt: str, diff: float, stride: int) -> ExportReport:
    report = ExportReport(
        path=str(path),
        format=fmt,
        sha256=file_sha256(path),
        max_abs_diff=diff,
        parity_ok=diff <= PARITY_TOLERANCE,
        input_spec=f"float32 RGB 0..255, NCHW, H and W multiples of {stride}",
    )
    if not report.parity_ok:
        raise ExportError(f"{fmt} export differs from the eager model by {diff:.2e}")
    path.with_name(path.name + ".json").write_text(json.dumps(report.to_dict(), indent=2))
    return report


def export_torchscript(
    artifact: str | Path, out: str | Path, *, parity_size: tuple[int, int] = (320, 192)
) -> ExportReport:
    loaded = load_artifact(artifact)
    normalization = loaded.metadata.get("normalization", NORMALIZATION)
    flips = bool(loaded.metadata.get("test_time_flips", False))
    module = _Deployable(loaded.model, normalization, flips=flips).eval()
    stride = loaded.model.config.stride
    example = _parity_input(stride, parity_size)
    with torch.inference_mode():
        scripted = torch.jit.trace(module, example[:1])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    scripted.save(str(out))
    reloaded = torch.jit.load(str(out))
    with torch.inference_mode():
        actual = reloaded(example)
    expected = _eager_reference(loaded.model, normalization, example, flips=flips)
    return _report(out, "torchscript", _max_diff(expected, actual), stride)


def export_onnx(
    artifact: str | Path, out: str | Path, *, parity_size: tuple[int, int] = (320, 192)
) -> ExportReport:
    # Imported here, not at the top: only ONNX export needs onnxruntime, and the rest of vision
    # (the CLI included) imports torch, numpy and Pillow only.
    import onnxruntime

    loaded = load_artifact(artifact)
    normalization = loaded.metadata.get("normalization", NORMALIZATION)
    flips = bool(loaded.metadata.get("test_time_flips", False))
    module = _Deployable(loaded.model, normalization, flips=flips).eval()
    stride = loaded.model.config.stride
    example = _parity_input(stride, parity_size)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        # The torch.export-based exporter (the legacy TorchScript one is deprecated), with
        # batch, height and width left free: height and width as multiples of the stride.
        free = {
            0: torch.export.Dim("batch"),
            2: stride * torch.export.Dim("rows", min=1, max=1024),
            3: stride * torch.export.Dim("cols", min=1, max=1024),
        }
        torch.onnx.export(
            module,
            (example[:1],),
            str(out),
            input_names=["images"],
            output_names=["heatmap", "score"],
            dynamic_shapes={"images": free},
            dynamo=True,
            # One self-contained file (weights inside, not in a side `.onnx.data` file): what a
            # station downloads and loads from bytes must be the whole model.
            external_data=False,
            verbose=False,
        )
    except Exception as error:  # the exporter raises many types; the caller needs one
        raise ExportError(f"ONNX export failed: {error}") from error
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    actual = session.run(None, {"images": example.numpy().astype(np.float32)})
    expected = _eager_reference(loaded.model, normalization, example, flips=flips)
    return _report(out, "onnx", _max_diff(expected, tuple(actual)), stride)
