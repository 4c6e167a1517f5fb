"""The named ops of the AutoAugment detection policies, on a `Sample`.

Every op has the signature `op(sample, probability, level, seed, constants) -> Sample`:
`probability` is the policy's probability for the op, `level` its magnitude (0..10), `seed`
a [2] seed, `constants` a `magnitudes.Constants`. Whole-image ops happen with
`probability`; the `*_Only_BBoxes` ops always run and pick each box with
`probability * BBOX_ONLY_PROBABILITY_SCALE` instead, as the reference does.

What moves what:
  - colour ops and Cutout / BBox_Cutout change image pixels only;
  - `*_BBox` geometric ops warp the image, the masks and the boxes (boxes are then clipped
    and degenerate ones dropped with their masks and indices);
  - `*_Only_BBoxes` ops change pixels inside boxes, masks follow their geometric ones (see
    bbox_only_ops); boxes stay.
"""

import tensorflow as tf

from detection.dataloader.augment import bbox_only_ops
from detection.dataloader.augment import color_ops
from detection.dataloader.augment import cutout_ops
from detection.dataloader.augment import geometric_ops
from detection.dataloader.augment import magnitudes
from detection.dataloader.augment import sample as sample_lib
from detection.dataloader.augment import seeds

# Sub-seeds of an op's seed.
_APPLY, _SIGN, _OP = 0, 1, 2


def _with_probability(transform):
    """Op from transform(sample, level, seed, constants), applied with the probability."""

    def op(sample, probability, level, seed, constants):
        if probability <= 0.0:
            return sample
        if probability >= 1.0:
            return transform(sample, level, seed, constants)
        return sample_lib.cond(
            seeds.bernoulli(seeds.child(seed, _APPLY), probability),
            lambda s: transform(s, level, seed, constants),
            sample,
        )

    return op


def _image_op(image_fn):
    """Whole-image op from image_fn(image, level, seed, constants) -> image."""
    return _with_probability(
        lambda sample, level, seed, constants: sample._replace(
            image=image_fn(sample.image, level, seed, constants)
        )
    )


def _signed(seed, magnitude):
    return seeds.random_sign(seeds.child(seed, _SIGN)) * magnitude


def _warp_op(matrix_fn):
    """`*_BBox` op from matrix_fn(signed magnitude fn, level, image_size, constants)."""

    def transform(sample, level, seed, constants):
        image_size = tf.shape(sample.image)[:2]
        forward = matrix_fn(lambda m: _signed(seed, m), level, image_size, constants)
        return geometric_ops.warp_sample(sample, forward, constants.replace)

    return _with_probability(transform)


def _per_box_warp_op(matrix_fn):
    """`*_Only_BBoxes` geometric op; matrix_fn as for `_warp_op`, in crop pixels."""

    def op(sample, probability, level, seed, constants):
        if probability <= 0.0:
            return sample

        def forward_fn(crop_size):
            return matrix_fn(lambda m: _signed(seed, m), level, crop_size, constants)

        return bbox_only_ops.warp_in_boxes(
            sample,
            forward_fn,
            probability * magnitudes.BBOX_ONLY_PROBABILITY_SCALE,
            seeds.child(seed, _OP),
            constants.replace,
        )

    return op


def _per_box_image_op(image_fn):
    """`*_Only_BBoxes` colour/cutout op from image_fn(crop, level, seed, constants)."""

    def op(sample, probability, level, seed, constants):
        if probability <= 0.0:
            return sample
        return bbox_only_ops.apply_in_boxes(
            sample,
            lambda crop, crop_seed: image_fn(crop, level, crop_seed, constants),
            probability * magnitudes.BBOX_ONLY_PROBABILITY_SCALE,
            seeds.child(seed, _OP),
        )

    return op


def _rotate(signed, level, size, constants):
    degrees = signed(magnitudes.rotate_degrees(level))
    return geometric_ops.rotation_matrix(degrees, size[0], size[1])


def _shear_x(signed, level, size, constants):
    return geometric_ops.shear_matrix(signed(magnitudes.shear_amount(level)), 0.0)


def _shear_y(signed, level, size, constants):
    return geometric_ops.shear_matrix(0.0, signed(magnitudes.shear_amount(level)))


def _translate_matrix(const_name, axis):
    def matrix_fn(signed, level, size, constants):
        shift = signed(magnitudes.translate_pixels(level, getattr(constants, const_name)))
        return geometric_ops.translate_matrix(*((shift, 0.0) if axis == "x" else (0.0, shift)))

    return matrix_fn


def _translate_op(axis):
    """TranslateX/Y_BBox: whole-pixel shifts (a pad and a slice, not a warp)."""

    def transform(sample, level, seed, constants):
        shift = _signed(seed, magnitudes.translate_pixels(level, constants.translate_const))
        dx, dy = (shift, 0.0) if axis == "x" else (0.0, shift)
        return geometric_ops.translate_sample(sample, dx, dy, constants.replace)

    return _with_probability(transform)


def _factor_op(color_fn):
    return _image_op(
        lambda image, level, seed, c: color_fn(image, magnitudes.enhance_factor(level))
    )


def _cutout(image, level, seed, constants, const_name="cutout_const"):
    pad_size = magnitudes.cutout_pad_size(level, getattr(constants, const_name))
    return cutout_ops.cutout(image, pad_size, seeds.child(seed, _OP), constants.replace)


def _bbox_cutout(sample, level, seed, constants):
    pad_fraction = magnitudes.bbox_cutout_pad_fraction(level, constants.cutout_max_pad_fraction)
    image = cutout_ops.bbox_cutout(
        sample.image,
        sample.boxes,
        pad_fraction,
        seeds.child(seed, _OP),
        constants.cutout_bbox_replace_with_mean,
        constants.replace,
    )
    return sample._replace(image=image)


OPS = {
    "AutoContrast": _image_op(lambda image, *_: color_ops.autocontrast(image)),
    "Equalize": _image_op(lambda image, *_: color_ops.equalize(image)),
    "Invert": _image_op(lambda image, *_: color_ops.invert(image)),
    "Posterize": _image_op(
        lambda image, level, *_: color_ops.posterize(image, magnitudes.posterize_bits(level))
    ),
    "Solarize": _image_op(
        lambda image, level, *_: color_ops.solarize(image, magnitudes.solarize_threshold(level))
    ),
    "SolarizeAdd": _image_op(
        lambda image, level, *_: color_ops.solarize_add(image, magnitudes.solarize_addition(level))
    ),
    "Color": _factor_op(color_ops.color),
    "Contrast": _factor_op(color_ops.contrast),
    "Brightness": _factor_op(color_ops.brightness),
    "Sharpness": _factor_op(color_ops.sharpness),
    "Cutout": _image_op(_cutout),
    "BBox_Cutout": _with_probability(_bbox_cutout),
    "Rotate_BBox": _warp_op(_rotate),
    "ShearX_BBox": _warp_op(_shear_x),
    "ShearY_BBox": _warp_op(_shear_y),
    "TranslateX_BBox": _translate_op("x"),
    "TranslateY_BBox": _translate_op("y"),
    "Rotate_Only_BBoxes": _per_box_warp_op(_rotate),
    "ShearX_Only_BBoxes": _per_box_warp_op(_shear_x),
    "ShearY_Only_BBoxes": _per_box_warp_op(_shear_y),
    "TranslateX_Only_BBoxes": _per_box_warp_op(_translate_matrix("translate_bbox_const", "x")),
    "TranslateY_Only_BBoxes": _per_box_warp_op(_translate_matrix("translate_bbox_const", "y")),
    "Flip_Only_BBoxes": _per_box_warp_op(
        lambda signed, level, size, constants: bbox_only_ops.flip_matrix(size)
    ),
    "Equalize_Only_BBoxes": _per_box_image_op(lambda crop, *_: color_ops.equalize(crop)),
    "Cutout_Only_BBoxes": _per_box_image_op(
        lambda crop, level, seed, constants: _cutout(
            crop, level, seed, constants, "cutout_bbox_const"
        )
    ),
}
