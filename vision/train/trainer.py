"""One model in training: what each batch shows it, its loss, hard-example mining, scoring."""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from vision.model import build_model, flipped_views, images_to_tensor, views_mean
from vision.train.config import TrainConfig
from vision.train.crops import augmented_batch, crop_sample, flip_rotate, resize_masks, whole_image
from vision.train.good_only import synthesize
from vision.train.losses import (
    box_bag_loss,
    cell_shares,
    cell_targets,
    mask_bag_loss,
    outline_loss,
)
from vision.train.mining import confusing_clean_cells, missed_defect_cells
from vision.train.samples import Sample

Box = tuple[int, int, int, int]
# A sample and the pixel (y, x) to centre a crop on.
CropSpot = tuple[Sample, tuple[int, int]]


@dataclass
class Batch:
    """One training batch: augmented crops on the device and each crop's supervision."""

    images: torch.Tensor  # (N, 3, crop, crop), normalised and augmented
    masks: list[np.ndarray | None]  # bool (crop, crop) pixel truth, or None (boxes or label only)
    boxes: list[tuple[Box, ...]]  # weak boxes, in crop pixels
    labels: list[int]  # 1 when the crop shows a defect
    coarse: list[bool]  # the mask outlines an area: trained as a bag
    # Now and then a defect known only by its label, shown whole (normalised, augmented).
    whole: torch.Tensor | None = None


PRECISIONS = ("auto", "float32", "bfloat16")


def training_precision(wanted: str, device: torch.device) -> str:
    """The precision of the training forward pass: bfloat16 under autocast where the device
    has it in hardware (a third off a CPU training step on AMX; weights stay float32), else
    float32. Emulated bfloat16 would be slower than float32, so "auto" never takes it."""
    if wanted not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {wanted!r}")
    if wanted != "auto":
        return wanted
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    native = (
        getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        or getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    )
    return "bfloat16" if device.type == "cpu" and native else "float32"


class Trainer:
    """The model, its random streams and the pools of hard examples it is cropped from."""

    def __init__(
        self,
        samples: list[Sample],
        config: TrainConfig,
        device: torch.device,
        *,
        synthetic_defects: bool = False,
    ):
        self.samples = samples
        # No labelled defect (a new line): every defect crop is a good crop with a defect
        # synthesised on it (vision.train.good_only).
        self.synthetic_defects = synthetic_defects
        self.config = config
        self.device = device
        self.rng = random.Random(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.precision = training_precision(config.precision, device)
        self.model = build_model(config.model).to(device).to(memory_format=torch.channels_last)
        self.stride = config.model.stride
        self.defects = [s for s in samples if s.label == 1]
        self.oks = [s for s in samples if s.label == 0]
        # Defects known only by an image label cannot be cropped safely: they train whole.
        self.whole = [s for s in self.defects if s.pixel_mask is None and not s.boxes]
        self.croppable = [s for s in self.defects if s.pixel_mask is not None or s.boxes]
        self.hard_negatives: list[CropSpot] = []
        self.hard_positives: list[CropSpot] = []
        # Missed defects found so far, per sample: each epoch re-mines only a few images, so
        # the pool keeps the others' misses until their image is looked at again.
        self._missed: dict[int, list[CropSpot]] = {}

    def _pick(self, *, defect: bool) -> tuple[Sample, tuple[int, int] | None]:
        """A sample and where to centre its crop (None: anywhere)."""
        if defect:
            if self.hard_positives and self.rng.random() < self.config.hard_positive_share:
                return self.hard_positives[self.rng.randrange(len(self.hard_positives))]
            sample = self.croppable[self.rng.randrange(len(self.croppable))]
            if self.rng.random() < self.config.defect_centred:
                pixels = sample.defect_pixels
                y, x = pixels[self.rng.randrange(len(pixels))]
                return sample, (int(y), int(x))
            return sample, None
        if self.hard_negatives and self.rng.random() < self.config.hard_negative_share:
            return self.hard_negatives[self.rng.randrange(len(self.hard_negatives))]
        pool = self.oks or self.croppable
        return pool[self.rng.randrange(len(pool))], None

    @torch.no_grad()
    def mine_hard_examples(self) -> None:
        """Find where the model now fires on clean surface (screen edges, reflections, dust)
        and crop there more often: random crops rarely land on those few confusing spots.
        With hard_positive_share, also find the defects it scores lowest (fine masks only)."""
        candidates = [s for s in self.samples if s.pixel_mask is not None]
        if not candidates:
            return
        chosen = self.rng.sample(candidates, min(len(candidates), self.config.mine_images))
        self.model.eval()
        negatives = []
        for sample in chosen:
            cells, truth = self._cells_and_truth(sample)
            columns = truth.shape[1]
            for index in confusing_clean_cells(cells, truth):
                negatives.append((sample, self._cell_centre(index, columns)))
            if self.config.hard_positive_share and truth.any() and not sample.coarse:
                self._missed[id(sample)] = [
                    (sample, self._cell_centre(index, columns))
                    for index in missed_defect_cells(cells, truth)
                ]
        self.hard_negatives = negatives
        self.hard_positives = [entry for missed in self._missed.values() for entry in missed]
        self.model.train()

    def _cells_and_truth(self, sample: Sample) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's cell logits over the whole image and the cell targets of its mask."""
        logits, _ = self.model(images_to_tensor([sample.image]).to(self.device))
        cells = self._own_cells(logits, sample).cpu()
        truth = cell_targets(torch.from_numpy(sample.pixel_mask)[None], self.stride)[0, 0]
        return cells, truth

    def _own_cells(self, logits: torch.Tensor, sample: Sample) -> torch.Tensor:
        """(1, 1, h', w') logits of one whole image -> (h, w): its own cells, the stride
        padding left out."""
        height, width = sample.image.shape[:2]
        return logits[0, 0, : -(-height // self.stride), : -(-width // self.stride)]

    def _cell_centre(self, index: int, columns: int) -> tuple[int, int]:
        row, col = divmod(index, columns)
        return row * self.stride + self.stride // 2, col * self.stride + self.stride // 2

    def batch_loss(self, batch: Batch | None = None) -> torch.Tensor:
        """The loss of one batch (a fresh one unless given): image labels, plus whichever of
        cell masks, coarse-mask bags, box bags and a whole defect image (label only) the batch
        has. The forward pass runs in the trainer's reduced precision where it has one."""
        batch = batch or self.draw_batch()
        outline_logits = None
        with self._autocast():
            if self.model.outline is not None:
                logits, image_logits, outline_logits = self.model.forward_with_outline(batch.images)
            else:
                logits, image_logits = self.model(batch.images)
            whole_logit = None if batch.whole is None else self.model(batch.whole)[1]
        logits, image_logits = logits.float(), image_logits.float()
        outline_logits = None if outline_logits is None else outline_logits.float()
        target_labels = torch.tensor(batch.labels, dtype=torch.float32, device=self.device)
        loss = F.binary_cross_entropy_with_logits(image_logits, target_labels)
        for term in (
            self._fine_mask_loss(logits, batch),
            self._coarse_mask_loss(logits, batch),
            self._box_loss(logits, batch),
            self._outline_loss(outline_logits, batch),
            self._whole_image_loss(whole_logit),
        ):
            if term is not None:
                loss = loss + term
        return loss

    def prefetched(self, count: int) -> Iterator[Batch]:
        """`count` fresh batches, each drawn in a background thread while the caller trains on
        the one before: drawing a batch (crops, zoom, augmentation) took 40% of a training step
        on one core, and torch lets go of the GIL in most of it, so it runs on the other core
        (or beside the GPU). One thread draws them in order, so a seed gives the same batches;
        the draw in flight is finished before the generator closes (mining draws from the same
        random streams)."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="batches") as pool:
            pending = pool.submit(self.draw_batch) if count > 0 else None
            for index in range(count):
                batch = pending.result()
                pending = pool.submit(self.draw_batch) if index + 1 < count else None
                yield batch

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "float32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def draw_batch(self) -> Batch:
        """batch_size crops, defect and clean in turn, flipped and turned, zoomed when
        scale_jitter is set, then augmented; now and then a whole defect image known only by
        its label (drawn last: the order of the random draws is the seed's)."""
        config = self.config
        crops, masks, boxes_list, labels, coarse = [], [], [], [], []
        source = config.crop
        if config.scale_jitter:
            zoom = math.exp(self.rng.uniform(-config.scale_jitter, config.scale_jitter))
            source = max(self.stride, round(config.crop * zoom))
        for index in range(config.batch_size):
            defect = index % 2 == 0 and (bool(self.croppable) or self.synthetic_defects)
            if defect and self.synthetic_defects:
                image, mask, boxes, label = self._synthetic_crop(source)
                is_coarse = False
            else:
                sample, centre = self._pick(defect=defect)
                image, mask, boxes, label = self._crop(sample, centre, source)
                is_coarse = sample.coarse
            crops.append(image)
            masks.append(mask)
            boxes_list.append(boxes)
            labels.append(label)
            coarse.append(is_coarse)
        images = augmented_batch(crops, config.crop, self.generator).to(self.device)
        if source != config.crop:
            masks = resize_masks(masks, config.crop)
        return Batch(images, masks, boxes_list, labels, coarse, self._whole_image())

    def _crop(
        self, sample: Sample, centre: tuple[int, int] | None, source: int
    ) -> tuple[np.ndarray, np.ndarray | None, tuple[Box, ...], int]:
        """A source x source crop with its mask (resized with the batch) and its boxes scaled
        to the training crop, flipped and turned unless it has boxes."""
        image, mask, boxes, label = crop_sample(sample, source, self.rng, centre)
        if source != self.config.crop:
            factor = self.config.crop / source
            boxes = tuple(tuple(int(round(value * factor)) for value in box) for box in boxes)
        if boxes:
            # Rotating boxes is fiddly and their loss is loose anyway: keep their orientation.
            image = np.ascontiguousarray(image)
        else:
            image, mask = flip_rotate(image, mask, self.rng, rotate=self.config.rotate)
        return image, mask, boxes, label

    def _synthetic_crop(self, source: int) -> tuple[np.ndarray, np.ndarray, tuple, int]:
        """A good crop with a synthetic defect in it, and the defect's mask."""
        sample = self.oks[self.rng.randrange(len(self.oks))]
        other = self.oks[self.rng.randrange(len(self.oks))]
        image, _, _, _ = self._crop(sample, None, source)
        image, mask = synthesize(image, self.rng, other=other.image)
        return image, mask, (), 1

    def _fine_mask_loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor | None:
        """Cell by cell on crops with a fine mask."""
        chosen = [i for i, m in enumerate(batch.masks) if m is not None and not batch.coarse[i]]
        if not chosen:
            return None
        cell_truth = self._cell_truth(batch, chosen)
        # Defect cells are rare: weigh them up so the heatmap does not learn "all clean".
        weight = 1.0 + (self.config.positive_cell_weight - 1.0) * cell_truth
        return F.binary_cross_entropy_with_logits(logits[chosen], cell_truth, weight=weight)

    def _coarse_mask_loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor | None:
        """One bag per crop with a coarse mask."""
        chosen = [i for i, m in enumerate(batch.masks) if m is not None and batch.coarse[i]]
        if not chosen:
            return None
        return mask_bag_loss(logits[chosen], self._cell_truth(batch, chosen))

    def _outline_loss(self, logits: torch.Tensor | None, batch: Batch) -> torch.Tensor | None:
        """The outline head on every crop whose pixels are all known (fine and coarse masks,
        clean crops); crops known by boxes or a label only teach it nothing."""
        chosen = [i for i, m in enumerate(batch.masks) if m is not None]
        if logits is None or not chosen:
            return None
        masks = torch.from_numpy(np.stack([batch.masks[i] for i in chosen]))
        return outline_loss(logits[chosen], cell_shares(masks, self.stride).to(self.device))

    def _cell_truth(self, batch: Batch, chosen: list[int]) -> torch.Tensor:
        masks = np.stack([batch.masks[i] for i in chosen])
        return cell_targets(torch.from_numpy(masks), self.stride).to(self.device)

    def _box_loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor | None:
        """Multiple-instance loss on crops known by boxes only."""
        losses = [
            box_bag_loss(logits[i], batch.boxes[i], self.stride)[0]
            for i, m in enumerate(batch.masks)
            if m is None and batch.boxes[i]
        ]
        return torch.stack(losses).mean() if losses else None

    def _whole_image(self) -> torch.Tensor | None:
        """Now and then a defect known only by its label, shown whole: it must score high."""
        if not (self.whole and self.rng.random() < len(self.whole) / max(1, len(self.defects))):
            return None
        sample = self.whole[self.rng.randrange(len(self.whole))]
        return whole_image(sample.image, self.stride, self.generator).to(self.device)

    def _whole_image_loss(self, logit: torch.Tensor | None) -> torch.Tensor | None:
        if logit is None:
            return None
        return F.binary_cross_entropy_with_logits(logit.float(), torch.ones_like(logit.float()))

    @torch.no_grad()
    def outlines(self, samples: Sequence[Sample]) -> list[np.ndarray]:
        """Each image's outline cells (probabilities); the model must have an outline head."""
        self.model.eval()
        result = []
        for sample in samples:
            images = images_to_tensor([sample.image]).to(self.device)
            _, _, logits = self.model.forward_with_outline(images)
            result.append(torch.sigmoid(self._own_cells(logits, sample)).cpu().numpy())
        self.model.train()
        return result

    @torch.no_grad()
    def scores(
        self,
        samples: Sequence[Sample],
        model: torch.nn.Module | None = None,
        *,
        flips: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each image's score and its hottest heatmap cell (both probabilities), by the model in
        training or by `model`; with `flips`, the score as served with test-time
        flips (the mean of the views' image logits)."""
        scoring = model or self.model
        scoring.eval()
        result, peaks = [], []
        for sample in samples:
            batch = images_to_tensor([sample.image]).to(self.device)
            views = flipped_views(batch) if flips else batch
            logits, image_logit = scoring(views)
            cells = self._own_cells(logits[:1], sample)
            result.append(torch.sigmoid(views_mean(image_logit, len(views))).item())
            peaks.append(torch.sigmoid(cells.max()).item())
        self.model.train()
        return np.array(result), np.array(peaks)
