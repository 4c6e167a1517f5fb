"""Squeeze-and-excitation: channel gating from globally pooled features.

Hu, Shen, Sun. "Squeeze-and-Excitation Networks", CVPR 2018; in the MBConv form of
MnasNet / EfficientNet (Tan et al. 2019): the squeeze width is a fraction `se_ratio` of the
block's *input* channels (before the inverted-bottleneck expansion), the squeeze uses swish,
and both 1x1 convolutions have biases.
"""

import keras
import tensorflow as tf

from detection.modeling.layers import conv as conv_lib


def num_squeezed_filters(in_filters, se_ratio):
    """Channels of the squeeze convolution: `max(1, int(in_filters * se_ratio))`."""
    return max(1, int(in_filters * se_ratio))


class SqueezeExcitation(keras.layers.Layer):
    """`x * sigmoid(expand(swish(reduce(mean_hw(x)))))`.

    Input and output: `[batch, h, w, in_filters * expand_ratio]`.
    """

    def __init__(self, in_filters, se_ratio, expand_ratio=1, kernel_initializer=None, **kwargs):
        """Initializes the layer.

        Args:
          in_filters: input channels of the enclosing block before expansion; the squeeze
            width is `max(1, int(in_filters * se_ratio))`.
          se_ratio: squeeze ratio in (0, 1].
          expand_ratio: channel expansion of the enclosing block; the gated tensor has
            `in_filters * expand_ratio` channels.
          kernel_initializer: of both convolutions; default variance scaling (fan in).
          **kwargs: `keras.layers.Layer` arguments.

        Raises:
          ValueError: on a ratio outside (0, 1] or non-positive filters.
        """
        super().__init__(**kwargs)
        if not 0.0 < se_ratio <= 1.0:
            raise ValueError(f"se_ratio: must be in (0, 1], got {se_ratio!r}")
        if in_filters < 1 or expand_ratio < 1:
            raise ValueError(
                f"squeeze_excitation: in_filters and expand_ratio must be >= 1, got "
                f"{in_filters} and {expand_ratio}"
            )
        self._channels = int(in_filters * expand_ratio)
        self._config = {
            "in_filters": in_filters,
            "se_ratio": se_ratio,
            "expand_ratio": expand_ratio,
        }
        initializer = kernel_initializer or keras.initializers.VarianceScaling()
        self._reduce = conv_lib.Conv2D(
            num_squeezed_filters(in_filters, se_ratio),
            1,
            kernel_initializer=initializer,
            dtype=self.dtype_policy,
            name="reduce",
        )
        self._expand = conv_lib.Conv2D(
            self._channels,
            1,
            kernel_initializer=initializer,
            dtype=self.dtype_policy,
            name="expand",
        )

    def build(self, input_shape):
        if input_shape[-1] != self._channels:
            raise ValueError(
                f"squeeze_excitation {self.name}: expects {self._channels} input channels "
                f"(in_filters * expand_ratio), got {input_shape[-1]}"
            )

    def call(self, inputs):
        squeezed = tf.reduce_mean(inputs, axis=[1, 2], keepdims=True)
        gate = self._expand(tf.nn.swish(self._reduce(squeezed)))
        return inputs * tf.sigmoid(gate)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(self._config)
        return config
