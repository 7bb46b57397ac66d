"""The scratch-detection network: a small fully-convolutional net giving a defect heatmap and an
image-level score, for any input size."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

ARCHITECTURE = "scratchnet-v1"


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of the network, stored in every artifact so it can be rebuilt."""

    widths: tuple[int, int, int] = (8, 16, 32)
    context_dilations: tuple[int, ...] = (1, 2, 4)
    # The image score is the mean of the top-k heatmap logits: max pooling (k=1) is the
    # multiple-instance assumption, a few cells make it less jumpy on single noisy cells.
    top_k: int = 2
    # A second, small head that outlines each defect's area (see ScratchNet.outline_logits).
    outline: bool = False

    @property
    def stride(self) -> int:
        return 2 ** len(self.widths)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        return cls(
            widths=tuple(data["widths"]),
            context_dilations=tuple(data["context_dilations"]),
            top_k=int(data["top_k"]),
            outline=bool(data.get("outline", False)),
        )


def _conv_bn_relu(
    channels_in: int, channels_out: int, *, stride: int = 1, dilation: int = 1
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(
            channels_in,
            channels_out,
            kernel_size=3,
            stride=stride,
            padding=dilation,
            dilation=dilation,
            bias=False,
        ),
        nn.BatchNorm2d(channels_out),
        nn.ReLU(inplace=True),
    )


class ScratchNet(nn.Module):
    """Strided stem down to 1/8 of the input, then dilated context at that resolution.

    Thin scratches (1-3 px at 1024 px) survive because the first convolution sees the full
    resolution: a bright line on a dark screen is a strong local feature even when the
    stride halves the grid. Dilated layers widen the context so reflections and dust (broad
    or point-like) can be told apart from strokes without more down-sampling.
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        layers: list[nn.Module] = []
        channels = 3
        for width in self.config.widths:
            layers.append(_conv_bn_relu(channels, width, stride=2))
            channels = width
        for dilation in self.config.context_dilations:
            layers.append(_conv_bn_relu(channels, channels, dilation=dilation))
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(channels, 1, kernel_size=1)
        nn.init.constant_(self.head.bias, -4.0)  # start near "no defect": most cells are clean
        self.outline = _outline_head(channels) if self.config.outline else None

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, H, W) normalised floats -> heatmap logits (N, 1, h, w), image logits (N,)."""
        logits = self.head(self.features(images))
        return logits, image_logits(logits, self.config.top_k)

    def forward_with_outline(
        self, images: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """forward() plus the outline head's logits (N, 1, h, w), from the same features."""
        features = self.features(images)
        logits = self.head(features)
        return logits, image_logits(logits, self.config.top_k), self.outline_logits(features)

    def outline_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Each cell's share of defect pixels, as logits.

        The score head learns where a defect is surest (for an area, its hottest cell is enough:
        trained cell by cell, it would fire on good texture too), so the area is a head of its
        own. Its loss also trains the shared features, which then carry the whole area; on the
        tiles that raised the pixel IoU from 0.10 (a head on frozen features) to 0.30 and left
        the image AUROC where it was (0.90 to 0.91 on the tuning split).
        """
        if self.outline is None:
            raise ValueError("this model has no outline head")
        return self.outline(features)


def image_logits(heatmap_logits: torch.Tensor, top_k: int) -> torch.Tensor:
    flat = heatmap_logits.flatten(1)
    k = min(top_k, flat.shape[1])
    return flat.topk(k, dim=1).values.mean(dim=1)


# Test-time flips: each image as it is, mirrored left-right, upside down, and both (turned
# half-way): views training shows every surface in (flips, and two quarter turns, are always
# in the augmentation). A model whose artifact says `test_time_flips` scores an image as the
# mean of the four views' image logits; its heatmap, outline and embedding are the first
# view's. (Dims of an (N, C, H, W) batch.)
FLIP_VIEWS: tuple[tuple[int, ...], ...] = ((), (3,), (2,), (2, 3))


def flipped_views(batch: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (4N, C, H, W): the batch, then each flip of it (FLIP_VIEWS); the
    height and width are multiples of the stride already, so each view's cells are the
    same image cells mirrored."""
    views = [batch] + [batch.flip(dims) for dims in FLIP_VIEWS[1:]]
    return torch.cat(views).contiguous(memory_format=torch.channels_last)


def views_mean(values: torch.Tensor, views: int) -> torch.Tensor:
    """(V * N, ...) per-view values, views first -> (N, ...): their mean over the views."""
    return values.reshape(views, -1, *values.shape[1:]).mean(dim=0)


def _outline_head(channels: int) -> nn.Sequential:
    hidden = channels // 2
    head = nn.Sequential(
        nn.Conv2d(channels, hidden, kernel_size=3, padding=2, dilation=2),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, 1, kernel_size=1),
    )
    nn.init.constant_(head[-1].bias, -4.0)
    return head


def build_model(config: ModelConfig | None = None) -> ScratchNet:
    return ScratchNet(config)


# Fixed normalisation (not per image): per-image normalisation would hide the lighting shifts
# that drift monitoring must see, and brightness augmentation already teaches robustness.
NORMALIZATION = {"mean": [0.3, 0.3, 0.3], "std": [0.25, 0.25, 0.25]}


def images_to_tensor(
    images: list | tuple, *, normalization: dict | None = None, stride: int = 8
) -> torch.Tensor:
    """Same-size (H, W, 3) uint8 arrays -> normalised (N, 3, H', W') with H', W' padded up to the
    stride (edge pixels repeated, so the border does not look like a bright edge)."""
    normalization = normalization or NORMALIZATION
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    mean = torch.tensor(normalization["mean"]).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(normalization["std"]).view(1, 3, 1, 1) * 255.0
    batch = (batch - mean) / std
    height, width = batch.shape[-2:]
    pad_h, pad_w = (-height) % stride, (-width) % stride
    if pad_h or pad_w:
        batch = nn.functional.pad(batch, (0, pad_w, 0, pad_h), mode="replicate")
    return batch.contiguous(memory_format=torch.channels_last)


def centred_images_to_tensor(
    images: Sequence[np.ndarray],
    *,
    mean: Sequence[float],
    stride: int = 8,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Same-size (H, W, 3) uint8 arrays -> float (N, 3, H', W'), minus the normalisation mean
    (0..255 scale), for a net from fold_for_inference; on `device` (the uint8 pixels go there
    first, then become floats).

    The pixels become floats in their own (N, H, W, 3) order, and the channels-last view of
    that is what the first convolution reads: converting the permuted view instead, or
    subtracting a per-channel mean over a last axis of 3, took 3.4-5 ms of a 1024x576 image
    against 1.4 ms. Dividing by the std lives in the first convolution.
    """
    pixels = images[0][None] if len(images) == 1 else np.stack(images)
    batch = torch.from_numpy(np.ascontiguousarray(pixels))
    if device is not None and device.type != "cpu":
        batch = batch.to(device, non_blocking=True)
    centred = batch.to(torch.float32)
    if len(set(mean)) == 1:
        centred.sub_(float(mean[0]))  # a scalar: one vectorised pass (1.4 ms against 3.8)
    else:
        centred.sub_(torch.tensor(mean, dtype=torch.float32, device=centred.device))
    centred = centred.permute(0, 3, 1, 2)
    height, width = centred.shape[-2:]
    pad_h, pad_w = (-height) % stride, (-width) % stride
    if pad_h or pad_w:
        centred = nn.functional.pad(centred, (0, pad_w, 0, pad_h), mode="replicate")
    return centred.contiguous(memory_format=torch.channels_last)


def normalization_mean_255(normalization: dict | None = None) -> list[float]:
    return [value * 255.0 for value in (normalization or NORMALIZATION)["mean"]]


def fold_for_inference(model: ScratchNet, normalization: dict | None = None) -> nn.Sequential:
    """The trained net as plain convolutions taking mean-centred 0..255 pixels: each BatchNorm
    folded into the convolution before it, and the division by the std into the first one.
    Same output as the trained net, fewer passes over memory."""
    std = torch.tensor((normalization or NORMALIZATION)["std"]) * 255.0
    layers: list[nn.Module] = []
    for index, (conv, norm, _) in enumerate(model.features):
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        weight = conv.weight.detach() * scale.view(-1, 1, 1, 1)
        if index == 0:
            weight = weight / std.view(1, 3, 1, 1)
        folded = nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            bias=True,
        )
        folded.weight.data = weight
        folded.bias.data = (norm.bias - norm.running_mean * scale).detach()
        layers.extend([folded, nn.ReLU(inplace=True)])
    net = nn.Sequential(*layers, copy.deepcopy(model.head)).eval()
    return net.to(memory_format=torch.channels_last)


class ConvReLUChain(nn.Module):
    """Folded convolutions, each with its ReLU done inside the convolution (oneDNN's fused
    post-op, the call torch's own compiler makes for conv + relu on the CPU): one pass over
    each output instead of a second one for the ReLU. On a 1024x576 image the first
    convolution's output alone is 4.7 MB, more than a core's cache, and the separate ReLU was
    8% of inference in a web process. The plain layers' numbers up to float rounding (checked
    when made: `fused_for_cpu` keeps the plain ones where the fused call differs or is
    missing)."""

    def __init__(self, convolutions: Sequence[nn.Conv2d]) -> None:
        super().__init__()
        self.convolutions = nn.ModuleList(convolutions)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        for conv in self.convolutions:
            images = _CONV_RELU(
                images,
                conv.weight,
                conv.bias,
                list(conv.padding),
                list(conv.stride),
                list(conv.dilation),
                conv.groups,
                "relu",
                [],
                "",
            )
        return images


_CONV_RELU = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)


def fused_for_cpu(features: nn.Sequential) -> nn.Module:
    """`features` (Conv2d, ReLU pairs from fold_for_inference) as a ConvReLUChain when this
    torch has oneDNN's fused call and it gives the same output on a probe image; else as
    they are."""
    layers = list(features)
    pairs = list(zip(layers[::2], layers[1::2], strict=False))
    if (
        _CONV_RELU is None
        or len(layers) % 2
        or not all(
            isinstance(conv, nn.Conv2d) and isinstance(relu, nn.ReLU) for conv, relu in pairs
        )
    ):
        return features
    chain = ConvReLUChain([conv for conv, _ in pairs]).eval()
    probe = torch.randn(
        1, layers[0].in_channels, 40, 56, generator=torch.Generator().manual_seed(0)
    )
    probe = probe.mul(60).contiguous(memory_format=torch.channels_last)
    try:
        with torch.inference_mode():
            same = torch.allclose(chain(probe), features(probe), rtol=1e-5, atol=1e-4)
    except RuntimeError:  # a torch built without oneDNN
        return features
    return chain if same else features
