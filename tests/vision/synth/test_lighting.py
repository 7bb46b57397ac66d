"""vision.synth.lighting: exposure and colour temperature of the fixture's light."""

import pytest

from vision.drift import image_stats
from vision.synth import Lighting, synth_phone

SMALL = (256, 144)


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
