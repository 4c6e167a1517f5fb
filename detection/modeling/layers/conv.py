"""Convolutions shared by backbones, decoders and heads.

- `Conv2DFixedPadding`: the ResNet-style bias-free convolution whose padding depends only on
  the kernel size, so strided outputs are `ceil(size / stride)` whatever the input parity.
- `conv2d`: the "separable or plain" switch every `use_separable_conv` key means.
"""

import keras


class Conv2DFixedPadding(keras.layers.Layer):
    """Bias-free convolution whose padding depends only on the kernel size.

    Stride 1 uses 'same' padding; larger strides pad `kernel_size - 1` pixels
    (the extra one at the bottom/right) then use 'valid', giving
    `ceil(size / stride)` outputs.

    Input: `[batch, h, w, c_in]`; output: `[batch, ceil(h/s), ceil(w/s), filters]`.
    """

    def __init__(self, filters, kernel_size, strides, **kwargs):
        super().__init__(**kwargs)
        self._strides = strides
        self._pad = None
        if strides > 1:
            total = kernel_size - 1
            self._pad = keras.layers.ZeroPadding2D(
                ((total // 2, total - total // 2), (total // 2, total - total // 2)),
                dtype=self.dtype_policy,
                name="pad",
            )
        self._conv = keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding="same" if strides == 1 else "valid",
            use_bias=False,
            kernel_initializer=keras.initializers.VarianceScaling(),
            dtype=self.dtype_policy,
            name="conv",
        )

    def _padded_shape(self, input_shape):
        if self._pad is None:
            return tuple(input_shape)
        return self._pad.compute_output_shape(input_shape)

    def build(self, input_shape):
        # The kernel is created from the input shape; Keras need not trace `call`.
        self._conv.build(self._padded_shape(input_shape))

    def compute_output_shape(self, input_shape):
        return self._conv.compute_output_shape(self._padded_shape(input_shape))

    def call(self, inputs):
        if self._pad is not None:
            inputs = self._pad(inputs)
        return self._conv(inputs)


def conv2d(
    filters,
    kernel_size,
    separable=False,
    strides=1,
    kernel_initializer="glorot_uniform",
    bias_initializer="zeros",
    dtype=None,
    name=None,
):
    """A 'same'-padded convolution with bias, depthwise-separable when `separable`.

    The separable form (depth multiplier 1) keeps Keras' default kernel initializers, as the
    original framework did; `kernel_initializer` applies to the plain form only.

    Input: `[batch, h, w, c_in]`; output: `[batch, ceil(h/strides), ceil(w/strides), filters]`.
    """
    if separable:
        return keras.layers.SeparableConv2D(
            filters,
            kernel_size,
            strides=strides,
            padding="same",
            depth_multiplier=1,
            bias_initializer=bias_initializer,
            dtype=dtype,
            name=name,
        )
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        kernel_initializer=kernel_initializer,
        bias_initializer=bias_initializer,
        dtype=dtype,
        name=name,
    )
