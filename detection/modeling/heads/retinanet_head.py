"""RetinaNet class and box subnets.

Lin, Goyal, Girshick, He, Dollar. "Focal Loss for Dense Object Detection",
ICCV 2017. As the original TPU framework:

- two subnets (class, box), each `num_convs` 3x3 convolutions of
  `num_filters` channels and a 3x3 prediction convolution;
- the convolutions are shared by all levels, but each (conv, level) pair has
  its own batch norm: feature statistics differ between pyramid levels;
- hidden convolutions start from N(0, 0.01) kernels and zero biases, the two
  prediction convolutions from N(0, 1e-5) kernels; the class bias starts at
  `-log((1 - 0.01) / 0.01)` so every anchor first predicts foreground with
  probability 0.01 (without this the many easy negatives swamp the focal
  loss in the first iterations);
- separable convolutions (depth multiplier 1) keep the Keras default
  initializers except for the class prior bias.

In bfloat16 the levels from `min_level + 2` up (e.g. P5-P7) share one call of each
convolution on a `LevelCanvas` (the same sums; on CPU a convolution call on such small maps
costs mostly its fixed overhead); their batch norms still see each level alone.
"""

import math

import keras

from detection.modeling.layers import norm_activation as norm_lib
from detection.modeling.layers.composite import Composite
from detection.modeling.layers.conv import conv2d
from detection.modeling.layers.level_canvas import LevelCanvas

PRIOR_PROBABILITY = 0.01


class RetinaNetHead(Composite, keras.layers.Layer):
    """Per-level class logits and box regressions.

    Call: `features {'3': [b, h_3, w_3, c], ..., str(max_level): [...]}` ->
    `(class_outputs {'3': [b, h_3, w_3, A * num_classes], ...},
      box_outputs {'3': [b, h_3, w_3, A * 4], ...})` with
    `A = anchors_per_location`; channel `a * num_classes + k` is class `k` of
    anchor `a`, channel `a * 4 + j` is coordinate `j` of anchor `a`.
    """

    def __init__(
        self,
        min_level,
        max_level,
        num_classes,
        anchors_per_location,
        num_convs=4,
        num_filters=256,
        use_separable_conv=False,
        use_batch_norm=True,
        norm_activation=None,
        pack_coarse_levels=None,
        **kwargs,
    ):
        """Initializes the head.

        Args:
          min_level: finest level.
          max_level: coarsest level.
          num_classes: classes per anchor, background included.
          anchors_per_location: anchors per pixel (num_scales *
            len(aspect_ratios)).
          num_convs: hidden convolutions per subnet.
          num_filters: channels of the hidden convolutions.
          use_separable_conv: depthwise-separable instead of plain convs.
          use_batch_norm: batch norm + activation after each hidden conv;
            when False only the activation.
          norm_activation: a `NormActivationConfig` (batch norm settings and
            the activation).
          pack_coarse_levels: run the convolutions of levels `min_level + 2` and
            up on one `LevelCanvas` (needs two such levels and static sizes);
            None: when computing in bfloat16.
          **kwargs: `keras.layers.Layer` arguments.

        Raises:
          ValueError: on invalid sizes.
        """
        kwargs.setdefault("name", "retinanet_head")
        super().__init__(**kwargs)
        for key, value, low in (
            ("min_level", min_level, 1),
            ("num_classes", num_classes, 1),
            ("anchors_per_location", anchors_per_location, 1),
            ("num_convs", num_convs, 0),
            ("num_filters", num_filters, 1),
        ):
            if int(value) != value or value < low:
                raise ValueError(
                    f"retinanet_head: {key} must be an integer >= {low}, got {value!r}"
                )
        if max_level < min_level:
            raise ValueError(f"retinanet_head: max_level {max_level} < min_level {min_level}")
        self._min_level = min_level
        self._max_level = max_level
        self._num_classes = num_classes
        self._anchors_per_location = anchors_per_location
        self._use_separable_conv = use_separable_conv
        self._use_batch_norm = use_batch_norm
        if pack_coarse_levels is None:
            pack_coarse_levels = self.compute_dtype == "bfloat16"
        self._pack_coarse_levels = bool(pack_coarse_levels)
        norm_activation = norm_activation or norm_lib.NormActivationConfig()
        self._activation_fn = norm_activation.activation_fn
        levels = range(min_level, max_level + 1)

        self._class_convs = [
            self._conv(num_filters, 0.01, "zeros", f"class-{i}") for i in range(num_convs)
        ]
        self._box_convs = [
            self._conv(num_filters, 0.01, "zeros", f"box-{i}") for i in range(num_convs)
        ]
        self._class_norms = {}
        self._box_norms = {}
        if use_batch_norm:
            for i in range(num_convs):
                for level in levels:
                    name = f"class-{i}-{level}"
                    self._class_norms[name] = norm_activation.build(
                        name=name, dtype=self.dtype_policy
                    )
                    name = f"box-{i}-{level}"
                    self._box_norms[name] = norm_activation.build(
                        name=name, dtype=self.dtype_policy
                    )
        prior_bias = -math.log((1.0 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
        self._class_predict = self._conv(
            num_classes * anchors_per_location,
            1e-5,
            keras.initializers.Constant(prior_bias),
            "class-predict",
        )
        self._box_predict = self._conv(4 * anchors_per_location, 1e-5, "zeros", "box-predict")

    def _conv(self, filters, stddev, bias_initializer, name):
        return conv2d(
            filters,
            3,
            separable=self._use_separable_conv,
            kernel_initializer=keras.initializers.RandomNormal(stddev=stddev),
            bias_initializer=bias_initializer,
            dtype=self.dtype_policy,
            name=name,
        )

    def _norm(self, x, level, norms, prefix, index, training):
        if self._use_batch_norm:
            return norms[f"{prefix}-{index}-{level}"](x, training=training)
        return self._activation_fn(x)

    def _subnet(self, x, level, convs, norms, prefix, training):
        for i, conv in enumerate(convs):
            x = self._norm(conv(x), level, norms, prefix, i, training)
        return x

    def _packed_subnets(self, features, levels, training):
        """The class and box outputs of `levels`, every convolution once on a canvas."""
        canvas = LevelCanvas([tuple(features[str(level)].shape[1:3]) for level in levels])
        inputs = canvas.pack([features[str(level)] for level in levels])
        outputs = []
        for convs, norms, prefix, predict in (
            (self._class_convs, self._class_norms, "class", self._class_predict),
            (self._box_convs, self._box_norms, "box", self._box_predict),
        ):
            x = inputs
            for i, conv in enumerate(convs):
                maps = canvas.unpack(conv(x))
                x = canvas.pack(
                    [
                        self._norm(m, level, norms, prefix, i, training)
                        for m, level in zip(maps, levels)
                    ]
                )
            outputs.append(dict(zip((str(level) for level in levels), canvas.unpack(predict(x)))))
        return outputs

    def _coarse_levels(self, features):
        """The levels to pack on a canvas (none unless packing applies)."""
        levels = list(range(self._min_level + 2, self._max_level + 1))
        if not self._pack_coarse_levels or len(levels) < 2:
            return []
        if any(None in tuple(features[str(level)].shape[1:3]) for level in levels):
            return []
        return levels

    def call(self, features, training=None):
        for level in range(self._min_level, self._max_level + 1):
            if str(level) not in features:
                raise KeyError(
                    f"retinanet_head: no features for level {str(level)!r}; "
                    f"got levels {sorted(features)}"
                )
        packed = self._coarse_levels(features)
        class_outputs = {}
        box_outputs = {}
        for level in range(self._min_level, self._max_level + 1):
            if level in packed:
                continue
            key = str(level)
            x = features[key]
            class_outputs[key] = self._class_predict(
                self._subnet(x, level, self._class_convs, self._class_norms, "class", training)
            )
            box_outputs[key] = self._box_predict(
                self._subnet(x, level, self._box_convs, self._box_norms, "box", training)
            )
        if packed:
            packed_class, packed_box = self._packed_subnets(features, packed, training)
            class_outputs.update(packed_class)
            box_outputs.update(packed_box)
        return class_outputs, box_outputs
