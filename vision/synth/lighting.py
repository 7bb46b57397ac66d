"""The fixture's light: exposure, colour temperature and falloff across the frame."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np


@dataclass(frozen=True)
class Lighting:
    """The light on the fixture: exposure, colour and a falloff across the frame."""

    brightness: float = 1.0  # multiplies every pixel
    temperature: float = 6500.0  # kelvin; 6500 is neutral, lower is warmer, higher bluer
    direction: float = 0.0  # degrees: the brighter side, 0 = right, 90 = top (anticlockwise)
    gradient: float = 0.2  # light falls off by this share from the bright side to the dark one

    def __post_init__(self) -> None:
        if not 0.05 <= self.brightness <= 5.0:
            raise ValueError(f"brightness must be in [0.05, 5], got {self.brightness}")
        if not 1500.0 <= self.temperature <= 20000.0:
            raise ValueError(f"temperature must be in [1500, 20000] K, got {self.temperature}")
        if not 0.0 <= self.gradient < 1.0:
            raise ValueError(f"gradient must be in [0, 1), got {self.gradient}")

    @classmethod
    def parse(cls, text: str) -> Lighting:
        """`"brightness=1.3,temperature=4000,direction=45"` -> Lighting; unnamed fields keep
        their defaults."""
        names = {f.name for f in fields(cls)}
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = (s.strip() for s in part.partition("="))
            if not sep or name not in names:
                raise ValueError(
                    f"bad lighting {part!r}: expected name=value with name in {sorted(names)}"
                )
            try:
                values[name] = float(value)
            except ValueError:
                raise ValueError(f"bad lighting {part!r}: {value!r} is not a number") from None
        return cls(**values)

    def channel_gains(self) -> np.ndarray:
        """Red, green, blue multipliers of this light against a 6500 K one, with the luma of
        the three kept at 1 so temperature changes colour, not exposure."""
        gains = _blackbody_rgb(self.temperature) / _blackbody_rgb(6500.0)
        return (gains / float(np.dot(gains, (0.299, 0.587, 0.114)))).astype(np.float32)


def _blackbody_rgb(kelvin: float) -> np.ndarray:
    """Approximate sRGB colour of a black body (Tanner Helland's fit to Mitchell Charity's
    table), good enough for a light that is too warm or too cold."""
    t = kelvin / 100.0
    red = 255.0 if t <= 66 else 329.698727446 * (t - 60) ** -0.1332047592
    green = (
        99.4708025861 * math.log(t) - 161.1195681661
        if t <= 66
        else 288.1221695283 * (t - 60) ** -0.0755148492
    )
    if t >= 66:
        blue = 255.0
    elif t <= 19:
        blue = 0.0
    else:
        blue = 138.5177312231 * math.log(t - 10) - 305.0447927307
    return np.clip(np.array([red, green, blue], np.float64), 1.0, 255.0)
