"""Seeded synthetic phone photos with pixel-exact defect masks, for training, tests and demos.

The scene copies the real station photos (shared/datasets/msd_phone_screen_subset): a phone
lying landscape on a grey textured mat, a dark glossy screen filling about 70% of the frame,
black or white bezels with a speaker slot, cameras and a home button, soft reflections and
sensor noise. Defects (scratch, crack, stain) go in the mask; distractors a model must learn
to ignore (dust specks, smudges, reflection bands, bezel edges and features, mat texture) do
not.

Import from here; the modules are `phones` (the functions below), `lighting`, `scene` (layout,
base planes, finishing), `distractors`, `defects` and `drawing` (anti-aliased patches, noise).
"""

from vision.images import encode_jpeg, encode_png  # re-exported: callers import them from here
from vision.synth.defects import DEFECT_TYPES, DEFECT_WEIGHTS, MASK_COVERAGE, Defect
from vision.synth.drawing import SUPERSAMPLE, Box
from vision.synth.lighting import Lighting
from vision.synth.phones import (
    SynthPhone,
    contact_sheet,
    item_seed,
    synth_items,
    synth_phone,
    write_dataset,
)
from vision.synth.scene import REFERENCE_WIDTH

__all__ = [
    "DEFECT_TYPES",
    "DEFECT_WEIGHTS",
    "MASK_COVERAGE",
    "REFERENCE_WIDTH",
    "SUPERSAMPLE",
    "Box",
    "Defect",
    "Lighting",
    "SynthPhone",
    "contact_sheet",
    "encode_jpeg",
    "encode_png",
    "item_seed",
    "synth_items",
    "synth_phone",
    "write_dataset",
]
