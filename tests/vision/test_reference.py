"""vision.reference: the drift reference of clean images, as the server would compute it."""

import json

import numpy as np
import pytest
from PIL import Image

from vision.datasets import Item
from vision.drift import image_stats
from vision.images import decode_image, encode_jpeg
from vision.inference import Predictor
from vision.reference import as_station_sends, reference_from_images, reference_sample
from vision.synth import synth_items, synth_phone

FEATURES = {"brightness", "contrast", "sharpness", "r_g", "b_g", "saturation"}


@pytest.fixture(scope="module")
def predictor(tiny_artifact):
    return Predictor.from_artifact(tiny_artifact)


def test_reference_holds_what_the_server_stores_per_capture(predictor):
    images = [synth_phone(seed=seed, size=(128, 72), defect_types=[]).image for seed in range(3)]
    reference = reference_from_images(predictor, iter(images), source="captures")
    assert set(reference) == {
        "image_stats",
        "embeddings",
        "scores",
        "count",
        "source",
        "clean_only",
    }
    assert (reference["count"], reference["source"], reference["clean_only"]) == (
        3,
        "captures",
        False,
    )
    # What the server computes for each capture: the image decoded from the station's JPEG.
    sent = [decode_image(encode_jpeg(image, 90)) for image in images]
    predictions = predictor.predict(sent)
    for index, (image, prediction) in enumerate(zip(sent, predictions, strict=True)):
        for name, value in image_stats(image).items():
            assert reference["image_stats"][name][index] == round(float(value), 5)
        assert reference["embeddings"][index] == prediction.embedding_list(4)
        assert reference["scores"][index] == round(prediction.score, 6)
    assert json.loads(json.dumps(reference)) == reference


def test_images_of_different_sizes_keep_their_order(predictor):
    small = synth_phone(seed=1, size=(64, 36)).image
    large = synth_phone(seed=2, size=(128, 72)).image
    reference = reference_from_images(predictor, [large, small, large])
    assert reference["embeddings"][0] == reference["embeddings"][2]
    assert reference["embeddings"][0] != reference["embeddings"][1]


def test_no_images_give_an_empty_reference_with_every_feature(predictor):
    reference = reference_from_images(predictor, [])
    assert reference["count"] == 0
    assert set(reference["image_stats"]) == FEATURES
    assert reference["embeddings"] == reference["scores"] == []


def test_sample_takes_clean_items_only_up_to_the_limit(predictor):
    items = synth_items(12, seed=4, size=(64, 36), defect_rate=0.5)
    clean = [item for item in items if item.label == "ok"]
    assert 3 < len(clean) < len(items)  # the seed gives both kinds
    everything = reference_sample(predictor, items, source="validation images")
    assert everything["count"] == len(clean)
    assert everything["clean_only"] is True
    assert everything["source"] == "validation images"
    assert everything["image_stats"]["brightness"] == [
        round(image_stats(as_station_sends(item.image))["brightness"], 5) for item in clean
    ]

    some = reference_sample(predictor, items, limit=3, seed=1)
    assert some["count"] == len(some["embeddings"]) == len(some["scores"]) == 3
    assert all(len(values) == 3 for values in some["image_stats"].values())
    assert some == reference_sample(predictor, items, limit=3, seed=1)  # seeded draw
    drawn = set(map(tuple, some["embeddings"]))
    assert drawn <= set(map(tuple, everything["embeddings"]))


def test_sample_is_none_when_disabled_or_nothing_is_clean(predictor):
    items = synth_items(4, seed=5, size=(64, 36), defect_rate=0.5)
    defects = [Item(label="defect", image=item.image) for item in items]
    assert reference_sample(predictor, items, limit=0) is None
    assert reference_sample(predictor, defects) is None


def test_sample_reads_images_from_files(predictor, tmp_path):
    image = synth_phone(seed=6, size=(64, 36), defect_types=[]).image
    path = tmp_path / "phone.png"
    Image.fromarray(image).save(path)
    reference = reference_sample(predictor, [Item(label="ok", path=path)])
    assert reference["count"] == 1
    [prediction] = predictor.predict([as_station_sends(image)])
    assert reference["embeddings"] == [prediction.embedding_list()]
    assert np.isfinite(reference["scores"][0])
