"""Reference samples for drift monitoring: the image statistics, embeddings and scores of clean
images, computed the way the server computes them for each capture."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from vision.datasets import Item
from vision.drift import image_stats
from vision.images import decode_image, encode_jpeg
from vision.inference import Predictor

REFERENCE_LIMIT = 300
STATS_DECIMALS = 5  # as the server rounds each capture's image_stats
EMBEDDING_DECIMALS = 4
SCORE_DECIMALS = 6  # as ImagePrediction.to_dict rounds the score
# Stations send JPEG: the server's statistics and embeddings are of decoded JPEGs, whose chroma
# subsampling lowers saturation and softens edges. A reference of raw training arrays would sit
# beside every line's captures (28% of a stable line's captures fell outside its saturation
# range): each image goes through the same encoding first.
STATION_JPEG_QUALITY = 90


def as_station_sends(image: np.ndarray) -> np.ndarray:
    """The image as the server sees it after a station sent it as JPEG."""
    return decode_image(encode_jpeg(image, STATION_JPEG_QUALITY))


def capture_stats(image: np.ndarray) -> dict[str, float]:
    """vision.drift.image_stats rounded as the server stores them per capture."""
    return {name: round(float(value), STATS_DECIMALS) for name, value in image_stats(image).items()}


def reference_from_images(
    predictor: Predictor,
    images: Iterable[np.ndarray],
    *,
    source: str = "images",
    clean_only: bool = False,
) -> dict[str, Any]:
    """The reference of `images` ((H, W, 3) uint8 RGB, any sizes), one image at a time (a
    lazy iterable never holds a few hundred full-size photos at once, and on a CPU a batch
    is no faster per image):

    `{"image_stats": {feature: [value per image]}, "embeddings": [[...] per image],
    "scores": [...], "count": n, "source": source, "clean_only": clean_only}`, in the images'
    order. `clean_only` records what the caller knows: that every image shows a good part.
    """
    stats_rows: list[dict[str, float]] = []
    embeddings: list[list[float]] = []
    scores: list[float] = []
    for raw in images:
        image = as_station_sends(raw)
        [prediction] = predictor.predict([image])
        stats_rows.append(capture_stats(image))
        embeddings.append(prediction.embedding_list(EMBEDDING_DECIMALS))
        scores.append(round(prediction.score, SCORE_DECIMALS))
    names = list(stats_rows[0]) if stats_rows else list(image_stats(np.zeros((1, 1, 3), np.uint8)))
    return {
        "image_stats": {name: [row[name] for row in stats_rows] for name in names},
        "embeddings": embeddings,
        "scores": scores,
        "count": len(scores),
        "source": source,
        "clean_only": clean_only,
    }


def reference_sample(
    predictor: Predictor,
    items: Sequence[Item],
    *,
    limit: int = REFERENCE_LIMIT,
    seed: int = 0,
    source: str = "images",
) -> dict[str, Any] | None:
    """The reference of up to `limit` clean (`ok`) items, drawn with `seed` when there are
    more, in the items' order; None when `limit` is 0 or no item is clean.

    Clean only: a production line sees mostly good parts while training sets are rich in
    defects, so a reference with defects in it would make every line look drifted.
    """
    clean = [item for item in items if item.label == "ok"]
    if limit <= 0 or not clean:
        return None
    if len(clean) > limit:
        chosen = np.random.default_rng(seed).choice(len(clean), size=limit, replace=False)
        clean = [clean[index] for index in sorted(chosen)]
    images = (item.load_image() for item in clean)
    return reference_from_images(predictor, images, source=source, clean_only=True)
