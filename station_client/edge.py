"""The edge model: the line's production model as ONNX (from GET /api/v1/lines/<code>/model),
run on the station with onnxruntime when the line's outage policy is `edge`.

The file's contract (shared/INTERFACES.md): input `images`, float32 RGB 0..255, NCHW, height
and width multiples of 8; outputs `heatmap` and `score`. The verdict comes from the line's
thresholds: below `pass_threshold` passes, at or above `fail_threshold` fails, between is
unsure (None), and the station then holds the phone.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

STRIDE = 8


def image_pixels(data: bytes) -> np.ndarray:
    """Encoded image bytes -> (1, 3, H, W) float32 RGB 0..255, EXIF orientation applied, H and W
    cropped down to multiples of 8 (as the server's model sees the phone)."""
    with Image.open(io.BytesIO(data)) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
        pixels = np.asarray(image, dtype=np.float32)
    height, width = pixels.shape[0] // STRIDE * STRIDE, pixels.shape[1] // STRIDE * STRIDE
    if height == 0 or width == 0:
        raise ValueError(f"the image is {pixels.shape[1]}x{pixels.shape[0]}: too small")
    return np.ascontiguousarray(pixels[:height, :width].transpose(2, 0, 1)[None])


def verdict_for(score: float, *, pass_threshold: float, fail_threshold: float) -> str | None:
    if score >= fail_threshold:
        return "fail"
    if score < pass_threshold:
        return "pass"
    return None  # unsure


class EdgeModel:
    """One ONNX file, loaded once (a few hundred milliseconds) and reused."""

    def __init__(self, path: str | Path, *, threads: int = 1) -> None:
        import onnxruntime  # here: a station without the edge policy never loads it

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        self.path = Path(path)
        self.session = onnxruntime.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )
        self._outputs = [output.name for output in self.session.get_outputs()]

    def score(self, data: bytes) -> float:
        outputs = self.session.run(None, {"images": image_pixels(data)})
        by_name = dict(zip(self._outputs, outputs, strict=True))
        score = by_name.get("score", outputs[-1])
        return float(np.asarray(score).reshape(-1)[0])
