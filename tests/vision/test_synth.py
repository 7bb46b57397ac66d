import time

import numpy as np
import pytest

from vision.datasets import read_manifest
from vision.drift import image_stats
from vision.metrics import connected_components
from vision.synth import (
    DEFECT_TYPES,
    Lighting,
    contact_sheet,
    synth_items,
    synth_phone,
    write_dataset,
)

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


@pytest.mark.parametrize("seed", range(12))
def test_mask_is_non_empty_exactly_for_defects_and_boxes_hold_it(seed):
    phone = synth_phone(seed=seed, size=SMALL, defect_rate=0.5)
    assert phone.mask.any() == (phone.label == "defect") == bool(phone.defects)
    covered = np.zeros_like(phone.mask)
    for defect in phone.defects:
        x0, y0, x1, y1 = defect.box
        assert 0 <= x0 < x1 <= 256 and 0 <= y0 < y1 <= 144
        covered[y0:y1, x0:x1] = True
    assert not (phone.mask & ~covered).any()
    # Defects stay on the screen.
    sx0, sy0, sx1, sy1 = phone.screen
    ys, xs = np.nonzero(phone.mask)
    if ys.size:
        assert xs.min() >= sx0 and xs.max() < sx1 and ys.min() >= sy0 and ys.max() < sy1


def test_defect_types_are_forced_or_forbidden():
    clean = synth_phone(seed=3, size=SMALL, defect_types=[])
    assert clean.label == "ok" and not clean.mask.any()
    both = synth_phone(seed=3, size=SMALL, defect_types=["crack", "stain"])
    assert [d.defect_type for d in both.defects] == ["crack", "stain"]
    with pytest.raises(ValueError, match="unknown defect type"):
        synth_phone(seed=3, size=SMALL, defect_types=["dent"])


def test_defect_rate_controls_the_share_of_defects():
    assert all(synth_phone(seed=s, size=(64, 36), defect_rate=1.0).defects for s in range(10))
    assert not any(synth_phone(seed=s, size=(64, 36), defect_rate=0.0).defects for s in range(10))
    kinds = [
        d.defect_type
        for s in range(40)
        for d in synth_phone(seed=s, size=(64, 36), defect_rate=1.0).defects
    ]
    assert set(kinds) == set(DEFECT_TYPES)
    assert kinds.count("scratch") > len(kinds) / 3  # mostly scratches


def test_scratches_are_thin_strokes_at_full_size():
    for seed in range(4):
        phone = synth_phone(seed=seed, defect_types=["scratch"])
        (scratch,) = phone.defects
        assert 1.0 <= scratch.width_px <= 4.0
        x0, y0, x1, y1 = scratch.box
        area = int(phone.mask.sum())
        # A curve is at least as long as its box's longer side: area / that is at most its
        # thickness, which the mask widens by about a pixel of anti-aliasing.
        assert area / max(x1 - x0, y1 - y0) <= scratch.width_px + 2.5
        assert max(x1 - x0, y1 - y0) >= 10
        assert connected_components(phone.mask)[1] == 1
        # It stands out from the screen around it.
        assert (
            phone.image[phone.mask].mean()
            > phone.image[y0:y1, x0:x1][~phone.mask[y0:y1, x0:x1]].mean()
        )


def test_no_scratch_is_a_stub_clipped_at_the_screen_edge():
    """A scratch starting near an edge runs onto the screen, not off it into a 3-pixel stub."""
    lengths = []
    for seed in range(60):
        phone = synth_phone(seed=seed, size=(512, 288), defect_types=["scratch"])
        (scratch,) = phone.defects
        x0, y0, x1, y1 = scratch.box
        lengths.append(max(x1 - x0, y1 - y0))
    # The shortest drawn scratch is 20 px at 1024 px wide: 10 px here, less anti-aliasing.
    assert min(lengths) >= 8, sorted(lengths)[:5]


def test_lighting_changes_brightness_and_colour():
    base = image_stats(synth_phone(seed=5, size=SMALL, lighting=Lighting()).image)
    bright = image_stats(synth_phone(seed=5, size=SMALL, lighting=Lighting(brightness=1.4)).image)
    warm = image_stats(synth_phone(seed=5, size=SMALL, lighting=Lighting(temperature=3500)).image)
    assert bright["brightness"] == pytest.approx(base["brightness"] * 1.4, rel=0.08)
    assert warm["r_g"] > base["r_g"] + 0.1
    assert warm["b_g"] < base["b_g"] - 0.1
    assert warm["brightness"] == pytest.approx(base["brightness"], rel=0.1)


def test_lighting_parse():
    lighting = Lighting.parse("brightness=1.3, temperature=4000,direction=45")
    assert lighting == Lighting(brightness=1.3, temperature=4000, direction=45)
    assert Lighting.parse("") == Lighting()
    with pytest.raises(ValueError, match="name=value"):
        Lighting.parse("glare=2")
    with pytest.raises(ValueError, match="not a number"):
        Lighting.parse("brightness=lots")
    with pytest.raises(ValueError, match="brightness"):
        Lighting.parse("brightness=0")


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
