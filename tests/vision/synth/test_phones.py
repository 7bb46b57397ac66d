"""vision.synth.phones: seeded phones, their sizes and speed, sets in memory and on disk."""

import time

import numpy as np
import pytest

from vision.datasets import read_manifest
from vision.synth import contact_sheet, synth_items, synth_phone, write_dataset

SMALL = (256, 144)


def test_same_seed_same_pixels_and_other_seed_other_pixels():
    first = synth_phone(seed=11, size=SMALL)
    again = synth_phone(seed=11, size=SMALL)
    other = synth_phone(seed=12, size=SMALL)
    assert first.image.tobytes() == again.image.tobytes()
    assert first.mask.tobytes() == again.mask.tobytes()
    assert first.defects == again.defects
    assert first.image.tobytes() != other.image.tobytes()


def test_image_and_mask_shapes():
    phone = synth_phone(seed=1, size=SMALL, defect_types=["scratch"])
    assert phone.image.shape == (144, 256, 3) and phone.image.dtype == np.uint8
    assert phone.mask.shape == (144, 256) and phone.mask.dtype == bool


@pytest.mark.parametrize("size", [(64, 36), (1920, 1080)])
def test_tiny_and_large_sizes(size):
    phone = synth_phone(seed=2, size=size, defect_types=["scratch", "crack", "stain"])
    width, height = size
    assert phone.image.shape == (height, width, 3)
    assert phone.mask.shape == (height, width)
    assert len(phone.defects) == 3 and phone.mask.any()


def test_synthesis_is_fast_enough_to_train_on():
    synth_phone(seed=0)
    started = time.perf_counter()
    for seed in range(5):
        synth_phone(seed=seed)
    per_image = (time.perf_counter() - started) / 5
    assert per_image < 0.15  # about 20 ms on one core; generous for a shared machine


def test_synth_items_are_stable_prefixes():
    items = synth_items(4, seed=9, size=(64, 36), defect_rate=0.5)
    first_two = synth_items(2, seed=9, size=(64, 36), defect_rate=0.5)
    assert [i.group for i in items] == [f"synth-9-{i}" for i in range(4)]
    for a, b in zip(first_two, items, strict=False):
        assert a == b and a.image.tobytes() == b.image.tobytes()
    for item in items:
        assert item.label == ("defect" if item.mask.any() else "ok")
        assert (item.defect_type != "") == (item.label == "defect")
        assert len(item.boxes) == (0 if item.label == "ok" else len(item.boxes))
        assert item.load_mask().shape == (36, 64)


def test_write_dataset_round_trips_through_read_manifest(tmp_path):
    manifest = write_dataset(tmp_path / "synth", 6, seed=4, size=(96, 54), defect_rate=0.5)
    items = read_manifest(manifest)
    expected = synth_items(6, seed=4, size=(96, 54), defect_rate=0.5)
    assert [i.label for i in items] == [e.label for e in expected]
    assert [i.defect_type for i in items] == [e.defect_type for e in expected]
    assert [i.group for i in items] == [e.group for e in expected]
    assert [i.boxes for i in items] == [e.boxes for e in expected]
    for item, original in zip(items, expected, strict=True):
        np.testing.assert_array_equal(item.load_mask(), original.mask)
        image = item.load_image()
        assert image.shape == (54, 96, 3)
        assert np.abs(image.astype(int) - original.image).mean() < 3  # JPEG, quality 92


def test_contact_sheet():
    images = [synth_phone(seed=s, size=(64, 36)).image for s in range(5)]
    sheet = contact_sheet(images, columns=2, thumb_width=32)
    assert sheet.dtype == np.uint8
    assert sheet.shape == (3 * (18 + 4), 2 * (32 + 4), 3)
