"""The per-instance mask decoder of ShapeMask's coarse and fine mask heads.

    instance features [b, n, S, S, C]
      -> num_convs x (3x3 conv of C channels, batch norm + activation), shared by instances
      -> optional learned upsampling (a transposed conv, kernel = stride = factor)
      -> 1x1 conv to one logit per mask class
      -> the logit of each instance's class: [b, n, S * factor, S * factor]

As the original framework: hidden convs start from N(0, 0.01) kernels and zero biases; the
prediction conv from N(0, 0.01) and the bias `-log((1 - 0.01) / 0.01)`, so every pixel first
predicts foreground with probability 0.01; the transposed conv keeps the Keras defaults.
"""

import math

import keras
import tensorflow as tf

from detection.modeling.layers import conv as conv_lib
from detection.modeling.layers import norm_activation as norm_lib
from detection.modeling.layers.composite import Composite

PRIOR_PROBABILITY = 0.01


def select_class(values, classes, num_classes):
    """The slice of each instance's class, by a one-hot contraction (no dynamic gather).

    Args:
      values: [b, n, ..., num_classes].
      classes: [b, n] int class ids in [0, num_classes); others select nothing (zeros).
      num_classes: static int, the last dimension of `values`.

    Returns:
      [b, n, ...] in the dtype of `values`.
    """
    values = tf.convert_to_tensor(values)
    one_hot = tf.one_hot(tf.cast(classes, tf.int32), num_classes, dtype=values.dtype)
    for _ in range(values.shape.rank - 3):
        one_hot = tf.expand_dims(one_hot, 2)
    return tf.reduce_sum(values * one_hot, axis=-1)


class MaskDecoder(Composite, keras.layers.Layer):
    """Instance features -> per-instance mask logits of the instance's class.

    Call: `features [b, n, S, S, C]`, `classes [b, n]` int -> `[b, n, S * u, S * u]` logits
    (u = upsample_factor), in the compute dtype.
    """

    def __init__(
        self,
        num_classes,
        num_filters,
        num_convs,
        upsample_factor=1,
        use_category_for_mask=True,
        norm_activation=None,
        **kwargs,
    ):
        """Initializes the decoder.

        Args:
          num_classes: classes including the background; with use_category_for_mask there is
            one logit channel per class, selected by the instance's class.
          num_filters: channels of the hidden convs (`num_downsample_channels`).
          num_convs: hidden 3x3 convs (>= 0).
          upsample_factor: >= 1; > 1 adds a transposed conv of that kernel and stride.
          use_category_for_mask: one mask per class, else one class-agnostic mask.
          norm_activation: a `NormActivationConfig`.
          **kwargs: `keras.layers.Layer` arguments.

        Raises:
          ValueError: on invalid sizes.
        """
        super().__init__(**kwargs)
        for key, value, low in (
            ("num_classes", num_classes, 1),
            ("num_downsample_channels", num_filters, 1),
            ("num_convs", num_convs, 0),
            ("upsample_factor", upsample_factor, 1),
        ):
            if int(value) != value or value < low:
                raise ValueError(f"{self.name}: {key} must be an integer >= {low}, got {value!r}")
        self._mask_classes = int(num_classes) if use_category_for_mask else 1
        self._use_category_for_mask = bool(use_category_for_mask)
        self._upsample_factor = int(upsample_factor)
        norm_activation = norm_activation or norm_lib.NormActivationConfig()
        self._convs = []
        self._norms = []
        for i in range(int(num_convs)):
            self._convs.append(
                conv_lib.Conv2D(
                    num_filters,
                    3,
                    padding="same",
                    kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
                    bias_initializer="zeros",
                    dtype=self.dtype_policy,
                    name=f"conv-{i}",
                )
            )
            self._norms.append(
                norm_activation.build(name=f"conv-{i}-norm", dtype=self.dtype_policy)
            )
        self._upsample = None
        if self._upsample_factor > 1:
            factor = self._upsample_factor
            self._upsample = keras.layers.Conv2DTranspose(
                num_filters, factor, strides=factor, dtype=self.dtype_policy, name="upsample"
            )
        self._predict = conv_lib.Conv2D(
            self._mask_classes,
            1,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            bias_initializer=keras.initializers.Constant(
                -math.log((1.0 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
            ),
            dtype=self.dtype_policy,
            name="predict",
        )

    def call(self, features, classes, training=None):
        shape = features.shape
        if shape.rank != 5 or not shape[2:].is_fully_defined():
            raise ValueError(
                f"{self.name}: features must be [batch, n, S, S, channels] with static S and "
                f"channels, got {shape}"
            )
        # Static sizes where known, so the output keeps a static shape outside XLA too.
        batch = shape[0] if shape[0] is not None else tf.shape(features)[0]
        num = shape[1] if shape[1] is not None else tf.shape(features)[1]
        x = tf.reshape(features, [-1] + shape[2:].as_list())
        for conv, norm in zip(self._convs, self._norms):
            x = norm(conv(x), training=training)
        if self._upsample is not None:
            x = self._upsample(x)
        logits = self._predict(x)
        logits = tf.reshape(logits, [batch, num] + logits.shape[1:].as_list())
        if self._use_category_for_mask:
            return select_class(logits, classes, self._mask_classes)
        return logits[..., 0]
