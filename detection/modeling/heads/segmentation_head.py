"""Semantic segmentation head: one pyramid level -> per-pixel class logits.

As the original framework's `segmentation_head` section: `num_convs` 3x3 convolutions keeping
the level's channel count (N(0, 0.01) kernels, zero biases), each followed by batch norm +
activation (`use_batch_norm`) or by a ReLU; then, when `upsample_factor > 1`, a transposed
convolution with kernel and stride `upsample_factor` and `upsample_num_filters` channels (no
activation); then a 1x1 convolution to `num_classes` logits (N(0, 0.01) kernel, zero bias).
"""

import keras

from detection.modeling.layers import conv as conv_lib
from detection.modeling.layers import norm_activation as norm_lib


class SegmentationHead(keras.layers.Layer):
    """Call: `features {'3': [b, h_3, w_3, c], ...}` ->
    `logits [b, h_l * f, w_l * f, num_classes]` for `l = level`, `f = upsample_factor`.
    """

    def __init__(
        self,
        num_classes,
        level=3,
        num_convs=2,
        upsample_factor=1,
        upsample_num_filters=256,
        use_batch_norm=True,
        norm_activation=None,
        **kwargs,
    ):
        """Initializes the head.

        Args:
          num_classes: classes per pixel, background (class 0) included.
          level: the pyramid level the head reads.
          num_convs: hidden 3x3 convolutions (>= 0).
          upsample_factor: integer >= 1; 1 means no transposed convolution.
          upsample_num_filters: channels of the transposed convolution.
          use_batch_norm: batch norm + activation after each hidden convolution, else ReLU.
          norm_activation: a `NormActivationConfig`.
          **kwargs: `keras.layers.Layer` arguments.

        Raises:
          ValueError: on an invalid value (the message names the key).
        """
        kwargs.setdefault("name", "segmentation_head")
        super().__init__(**kwargs)
        for key, value, low in (
            ("architecture.num_classes", num_classes, 1),
            ("segmentation_head.level", level, 1),
            ("segmentation_head.num_convs", num_convs, 0),
            ("segmentation_head.upsample_factor", upsample_factor, 1),
            ("segmentation_head.upsample_num_filters", upsample_num_filters, 1),
        ):
            if int(value) != value or value < low:
                raise ValueError(f"{key}: must be an integer >= {low}, got {value!r}")
        self._num_classes = int(num_classes)
        self._level = str(int(level))
        self._num_convs = int(num_convs)
        self._upsample_factor = int(upsample_factor)
        self._upsample_num_filters = int(upsample_num_filters)
        self._use_batch_norm = use_batch_norm
        self._norm_activation = norm_activation or norm_lib.NormActivationConfig()

    def build(self, input_shape):
        if not isinstance(input_shape, dict) or self._level not in input_shape:
            levels = sorted(input_shape) if isinstance(input_shape, dict) else input_shape
            raise ValueError(
                f"segmentation_head.level={self._level} is not among the feature levels {levels}"
            )
        channels = int(input_shape[self._level][-1])
        policy = self.dtype_policy
        self._convs = [
            conv_lib.Conv2D(
                channels,
                3,
                padding="same",
                kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
                bias_initializer="zeros",
                dtype=policy,
                name=f"class-{i}",
            )
            for i in range(self._num_convs)
        ]
        self._norms = (
            [
                self._norm_activation.build(name=f"class-{i}-bn", dtype=policy)
                for i in range(self._num_convs)
            ]
            if self._use_batch_norm
            else []
        )
        self._upsample = None
        if self._upsample_factor > 1:
            self._upsample = keras.layers.Conv2DTranspose(
                self._upsample_num_filters,
                self._upsample_factor,
                strides=self._upsample_factor,
                dtype=policy,
                name="upsample",
            )
        self._classifier = conv_lib.Conv2D(
            self._num_classes,
            1,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            bias_initializer="zeros",
            dtype=policy,
            name="logits",
        )

    def call(self, features, training=None):
        x = features[self._level]
        for i, conv in enumerate(self._convs):
            x = conv(x)
            x = self._norms[i](x, training=training) if self._use_batch_norm else keras.ops.relu(x)
        if self._upsample is not None:
            x = self._upsample(x)
        return self._classifier(x)
