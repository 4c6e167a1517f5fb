"""Region Proposal Network head (Faster R-CNN's objectness and box deltas per anchor).

Ren, He, Girshick, Sun. "Faster R-CNN: Towards Real-Time Object Detection with Region
Proposal Networks", NeurIPS 2015; over FPN levels as Lin et al. "Feature Pyramid Networks for
Object Detection", CVPR 2017. As the original TPU framework:

- `num_convs` 3x3 convolutions of `num_filters` channels shared by all levels, then two 1x1
  prediction convolutions: one objectness logit and 4 box deltas per anchor;
- with batch norm, each (conv, level) pair has its own batch norm (statistics differ between
  pyramid levels); without, the activation follows each hidden convolution;
- plain convolutions start from N(0, 0.01) kernels and zero biases; separable ones keep the
  Keras default kernels (depth multiplier 1).
"""

import keras

from detection.modeling.layers import norm_activation as norm_lib
from detection.modeling.layers.composite import Composite
from detection.modeling.layers.conv import conv2d


class RpnHead(Composite, keras.layers.Layer):
    """Per-level objectness logits and box deltas.

    Call: `features {'2': [b, h_2, w_2, c], ..., str(max_level): [...]}` ->
    `(score_outputs {'2': [b, h_2, w_2, A], ...}, box_outputs {'2': [b, h_2, w_2, A * 4], ...})`
    with `A = anchors_per_location`; channel `a * 4 + j` is coordinate `j` of anchor `a`.
    """

    def __init__(
        self,
        min_level,
        max_level,
        anchors_per_location,
        num_convs=1,
        num_filters=256,
        use_separable_conv=False,
        use_batch_norm=False,
        norm_activation=None,
        **kwargs,
    ):
        """Initializes the head.

        Args:
          min_level: finest level.
          max_level: coarsest level.
          anchors_per_location: anchors per pixel (num_scales * len(aspect_ratios)).
          num_convs: hidden 3x3 convolutions (0: predictions straight from the features).
          num_filters: channels of the hidden convolutions.
          use_separable_conv: depthwise-separable instead of plain convolutions.
          use_batch_norm: batch norm + activation after each hidden conv; when False only
            the activation.
          norm_activation: a `NormActivationConfig` (batch norm settings and the activation).
          **kwargs: `keras.layers.Layer` arguments.

        Raises:
          ValueError: on invalid sizes.
        """
        kwargs.setdefault("name", "rpn_head")
        super().__init__(**kwargs)
        for key, value, low in (
            ("min_level", min_level, 1),
            ("anchors_per_location", anchors_per_location, 1),
            ("num_convs", num_convs, 0),
            ("num_filters", num_filters, 1),
        ):
            if int(value) != value or value < low:
                raise ValueError(f"rpn_head: {key} must be an integer >= {low}, got {value!r}")
        if max_level < min_level:
            raise ValueError(f"rpn_head: max_level {max_level} < min_level {min_level}")
        self._min_level = min_level
        self._max_level = max_level
        self._use_separable_conv = use_separable_conv
        self._use_batch_norm = use_batch_norm
        norm_activation = norm_activation or norm_lib.NormActivationConfig()
        self._activation_fn = norm_activation.activation_fn
        self._convs = [self._conv(num_filters, 3, f"rpn-{i}") for i in range(num_convs)]
        self._norms = {}
        if use_batch_norm:
            for i in range(num_convs):
                for level in range(min_level, max_level + 1):
                    name = f"rpn-{i}-l{level}-bn"
                    self._norms[(i, level)] = norm_activation.build(
                        name=name, dtype=self.dtype_policy
                    )
        self._score_predict = self._conv(anchors_per_location, 1, "rpn-class")
        self._box_predict = self._conv(4 * anchors_per_location, 1, "rpn-box")

    def _conv(self, filters, kernel_size, name):
        return conv2d(
            filters,
            kernel_size,
            separable=self._use_separable_conv,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            dtype=self.dtype_policy,
            name=name,
        )

    def call(self, features, training=None):
        score_outputs = {}
        box_outputs = {}
        for level in range(self._min_level, self._max_level + 1):
            key = str(level)
            if key not in features:
                raise KeyError(
                    f"rpn_head: no features for level {key!r}; got levels {sorted(features)}"
                )
            x = features[key]
            for i, conv in enumerate(self._convs):
                x = conv(x)
                if self._use_batch_norm:
                    x = self._norms[(i, level)](x, training=training)
                else:
                    x = self._activation_fn(x)
            score_outputs[key] = self._score_predict(x)
            box_outputs[key] = self._box_predict(x)
        return score_outputs, box_outputs
