"""Convolutions shared by backbones, decoders and heads.

- `Conv2D`: `keras.layers.Conv2D` whose bfloat16 1x1 kernels run as one matrix product.
- `Conv2DFixedPadding`: the ResNet-style bias-free convolution whose padding depends only on
  the kernel size, so strided outputs are `ceil(size / stride)` whatever the input parity.
- `conv2d`: the "separable or plain" switch every `use_separable_conv` key means.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="detection")
class Conv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D`; in bfloat16 a 1x1 kernel runs as one matrix product.

    A 1x1 convolution (channels last, no dilation, one group) multiplies every
    `strides`-th pixel's channels by the kernel: the same sums as a `[b * h' * w', c_in] x
    [c_in, c_out]` matrix product, which is how it is computed when the layer computes in
    bfloat16 (the `mixed_bfloat16` policy). Same variables (`kernel` [1, 1, c_in, c_out]),
    checkpoints and multiply-accumulates; the results differ from the convolution kernel's
    only in summation order. Why: on CPUs with AMX/AVX512-BF16 oneDNN's bfloat16 matrix
    product runs the forward and backward pass of ResNet-50's 1x1 shapes ~1.7x faster than
    its bfloat16 convolution (the R50-FPN RetinaNet train step: -9%); in float32 the two are
    level (the step 1% slower as matrix products), so float32 keeps the convolution. XLA
    rewrites a 1x1 convolution as a dot anyway. Other kernels are Keras' convolution.

    Input: `[batch, h, w, c_in]`; output: `[batch, h', w', filters]` as Keras' Conv2D.
    """

    def _is_pointwise(self):
        return (
            self.compute_dtype == "bfloat16"
            and tuple(self.kernel_size) == (1, 1)
            and self.data_format == "channels_last"
            and tuple(self.dilation_rate) == (1, 1)
            and self.groups == 1
        )

    def convolution_op(self, inputs, kernel):
        if not self._is_pointwise():
            return super().convolution_op(inputs, kernel)
        # 'same' and 'valid' agree at 1x1: outputs sit on pixels 0, s, 2s, ...
        stride_y, stride_x = self.strides
        if (stride_y, stride_x) != (1, 1):
            inputs = inputs[:, ::stride_y, ::stride_x, :]
        shape = ops.shape(inputs)
        pixels = ops.reshape(inputs, (-1, shape[-1]))
        outputs = ops.matmul(pixels, ops.reshape(kernel, (kernel.shape[-2], kernel.shape[-1])))
        return ops.reshape(outputs, (shape[0], shape[1], shape[2], self.filters))


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
        self._conv = Conv2D(
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
    return Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        kernel_initializer=kernel_initializer,
        bias_initializer=bias_initializer,
        dtype=dtype,
        name=name,
    )
