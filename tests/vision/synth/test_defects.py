"""vision.synth.defects: which defects a phone gets, their masks, boxes and shapes."""

import numpy as np
import pytest

from vision.metrics import connected_components
from vision.synth import DEFECT_TYPES, synth_phone

SMALL = (256, 144)


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
