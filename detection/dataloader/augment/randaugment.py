"""RandAugment for classification (Cubuk et al. 2019): N uniformly drawn ops at magnitude M.

    augment = RandAugment(num_layers=2, magnitude=10)
    image = augment(image)  # uint8 [h, w, 3] -> uint8 [h, w, 3]
    image, boxes, masks, indices = augment.augment_detection(image, boxes, masks)

Each of the `num_layers` layers applies one op drawn uniformly from `OPS` (always applied,
as in the paper and the reference), at the shared magnitude; geometric ops take a random
sign. The ops are the detection policies' ops (detection_ops) with RandAugment's own pixel
constants (translate 100 px, cutout half side 40 px at magnitude 10); `augment_detection`
runs them on an image with boxes and masks, which the geometric ops move (same contract as
`autoaugment.DetectionPolicy`).
"""

import tensorflow as tf

from detection.dataloader.augment import detection_ops
from detection.dataloader.augment import magnitudes
from detection.dataloader.augment import sample as sample_lib
from detection.dataloader.augment import seeds

# RandAugment op name -> the detection op it runs (on an image without boxes).
OPS = {
    "AutoContrast": "AutoContrast",
    "Equalize": "Equalize",
    "Invert": "Invert",
    "Rotate": "Rotate_BBox",
    "Posterize": "Posterize",
    "Solarize": "Solarize",
    "Color": "Color",
    "Contrast": "Contrast",
    "Brightness": "Brightness",
    "Sharpness": "Sharpness",
    "ShearX": "ShearX_BBox",
    "ShearY": "ShearY_BBox",
    "TranslateX": "TranslateX_BBox",
    "TranslateY": "TranslateY_BBox",
    "Cutout": "Cutout",
    "SolarizeAdd": "SolarizeAdd",
}


class RandAugment:
    """Callable (image [h, w, 3] uint8, seed=None) -> image [h, w, 3] uint8; also
    `augment_detection` for images with boxes and masks."""

    def __init__(
        self,
        num_layers=2,
        magnitude=10.0,
        ops=tuple(OPS),
        constants=magnitudes.RANDAUGMENT_CONSTANTS,
        seed=None,
    ):
        """Builds the augmenter.

        Args:
          num_layers: N, ops applied one after the other (int >= 0).
          magnitude: M, shared magnitude in [0, 10].
          ops: names of the ops to draw from (default: all of `OPS`).
          constants: magnitudes.Constants (translate_const, cutout_const, replace).
          seed: optional Python int, op seed of the per-call seeds.

        Raises:
          ValueError: num_layers, magnitude or ops out of range (the message names it).
        """
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 0:
            raise ValueError(f"RandAugment num_layers must be an int >= 0, got {num_layers!r}")
        if isinstance(magnitude, bool) or not 0 <= magnitude <= magnitudes.MAX_LEVEL:
            raise ValueError(
                f"RandAugment magnitude must be in [0, {magnitudes.MAX_LEVEL:g}], got {magnitude!r}"
            )
        unknown = [name for name in ops if name not in OPS]
        if unknown or not ops:
            raise ValueError(
                f"RandAugment ops must be a non-empty subset of {', '.join(OPS)}; got {list(ops)!r}"
            )
        self._ops = tuple(ops)
        self._num_layers = num_layers
        self._magnitude = float(magnitude)
        self._constants = constants
        self._seed = seed

    def _op_branch(self, op_name, seed):
        op = detection_ops.OPS[OPS[op_name]]
        return lambda sample: op(sample, 1.0, self._magnitude, seed, self._constants)

    def _augment(self, sample, seed):
        for layer in range(self._num_layers):
            layer_seed = seeds.child(seed, layer)
            op_seed = seeds.child(layer_seed, 1)
            branches = [self._op_branch(name, op_seed) for name in self._ops]
            if len(branches) == 1:
                sample = branches[0](sample)
                continue
            choice = seeds.uniform_int(seeds.child(layer_seed, 0), 0, len(branches))
            sample = sample_lib.switch(choice, branches, sample)
        return sample

    # Plain TF ops only: AutoGraph conversion (tf.data.map applies it) would only cost time.
    @tf.autograph.experimental.do_not_convert
    def __call__(self, image, seed=None):
        """Augments one image.

        Args:
          image: [h, w, 3] uint8.
          seed: optional [2] int32/int64 seed of this call (default: drawn per call).

        Returns:
          [h, w, 3] uint8, the static shape of the input.
        """
        sample = sample_lib.from_inputs(image, tf.zeros([0, 4]), None)
        if seed is None:
            seed = seeds.per_call_seed(self._seed)
        return tf.ensure_shape(self._augment(sample, seed).image, sample.image.shape)

    @tf.autograph.experimental.do_not_convert
    def augment_detection(self, image, boxes, masks=None, seed=None):
        """Augments an image with its boxes (and masks); returns a `Sample`.

        Same arguments and results as `autoaugment.DetectionPolicy.__call__`: boxes that
        leave the image are dropped, `indices` gives the input rows kept.
        """
        inputs = sample_lib.from_inputs(image, boxes, masks)
        if seed is None:
            seed = seeds.per_call_seed(self._seed)
        return sample_lib.with_static_shapes(self._augment(inputs, seed), inputs)
