"""Magnitude (0..10) -> op argument, with the constants of the reference implementation.

The mappings and constants are those of the AutoAugment detection paper's published
implementation (Zoph et al. 2019, "Learning Data Augmentation Strategies for Object
Detection"); RandAugment (Cubuk et al. 2019) shares them with its own translate/cutout
constants. Signs of the geometric magnitudes are drawn at random by the ops, not here.
Pixel amounts (translate, cutout) are absolute pixels of the image the policy sees, as in
the reference (which saw COCO images of ~640 px before resizing).
"""

import dataclasses

MAX_LEVEL = 10.0
# Bbox-only ops run on each box with the sub-policy probability divided by 3, so that
# crowded images do not get most of their boxes distorted.
BBOX_ONLY_PROBABILITY_SCALE = 1.0 / 3.0


@dataclasses.dataclass(frozen=True)
class Constants:
    """Pixel scales of the magnitude mapping.

    Attributes:
      translate_const: TranslateX/Y(_BBox) shift at level 10, pixels.
      translate_bbox_const: TranslateX/Y_Only_BBoxes shift at level 10, pixels.
      cutout_const: Cutout half side at level 10, pixels.
      cutout_bbox_const: Cutout_Only_BBoxes half side at level 10, pixels.
      cutout_max_pad_fraction: BBox_Cutout patch size relative to the box at level 10.
      cutout_bbox_replace_with_mean: BBox_Cutout fills with the box's mean colour instead
        of `replace`.
      replace: grey level of pixels uncovered by warps and of cutout patches.
    """

    translate_const: float = 250.0
    translate_bbox_const: float = 120.0
    cutout_const: int = 100
    cutout_bbox_const: int = 50
    cutout_max_pad_fraction: float = 0.75
    cutout_bbox_replace_with_mean: bool = False
    replace: int = 128


DETECTION_CONSTANTS = Constants()
# The RandAugment reference (EfficientNet's) uses smaller shifts and cutouts.
RANDAUGMENT_CONSTANTS = Constants(translate_const=100.0, cutout_const=40)


def _fraction(level):
    if not 0 <= level <= MAX_LEVEL:
        raise ValueError(f"augmentation magnitude must be in [0, {MAX_LEVEL:g}], got {level}")
    return level / MAX_LEVEL


def enhance_factor(level):
    """Color / Contrast / Brightness / Sharpness blend factor: 0.1 .. 1.9 (1 = identity)."""
    return _fraction(level) * 1.8 + 0.1


def posterize_bits(level):
    """Bits kept: int(level / 10 * 4), i.e. 0..4, with 0 read as 1.

    The reference computed `(x >> (8 - bits)) << (8 - bits)`; for bits = 0 TensorFlow's CPU
    kernels (where input pipelines run) clamp the shift to 7, which keeps 1 bit.
    """
    return max(int(_fraction(level) * 4), 1)


def solarize_threshold(level):
    """Pixels >= threshold are inverted: 0 .. 256 (256 = identity)."""
    return int(_fraction(level) * 256)


def solarize_addition(level):
    """SolarizeAdd: added to pixels below 128: 0 .. 110."""
    return int(_fraction(level) * 110)


def rotate_degrees(level):
    """Rotate: 0 .. 30 degrees."""
    return _fraction(level) * 30.0


def shear_amount(level):
    """Shear: 0 .. 0.3 (pixels of shift per pixel of distance)."""
    return _fraction(level) * 0.3


def translate_pixels(level, translate_const):
    """Translate: 0 .. translate_const pixels."""
    return _fraction(level) * float(translate_const)


def cutout_pad_size(level, cutout_const):
    """Cutout half side: 0 .. cutout_const pixels."""
    return int(_fraction(level) * cutout_const)


def bbox_cutout_pad_fraction(level, cutout_max_pad_fraction):
    """BBox_Cutout patch size relative to the box: 0 .. cutout_max_pad_fraction."""
    return _fraction(level) * cutout_max_pad_fraction
