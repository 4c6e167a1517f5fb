"""ResNet residual (basic) and bottleneck blocks, post-activation (ResNet v1).

He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", arXiv:1512.03385. As in the
original TPU detection framework, a bottleneck block downsamples with its 3x3 convolution (the
variant often called "ResNet v1.5"), convolutions have no bias, and every batch norm is
followed by an optional DropBlock. Shared by the ResNet and SpineNet backbones.
"""

import keras

from detection.modeling.layers import dropblock as dropblock_lib
from detection.modeling.layers import stochastic_depth
from detection.modeling.layers.conv import Conv2DFixedPadding


class _Block(keras.layers.Layer):
    """Shared plumbing of the residual and bottleneck blocks."""

    expansion = 1

    def __init__(
        self,
        filters,
        strides,
        use_projection,
        norm_activation,
        dropblock_keep_prob=None,
        dropblock_size=None,
        drop_connect_rate=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._activation_fn = norm_activation.activation_fn
        self._projection = None
        if use_projection:
            self._projection = Conv2DFixedPadding(
                filters * self.expansion, 1, strides, dtype=self.dtype_policy, name="projection"
            )
            self._projection_norm = norm_activation.build(
                apply_activation=False, name="projection_bn", dtype=self.dtype_policy
            )
        # DropBlock holds no weights, so one instance serves every site.
        self._dropblock = dropblock_lib.DropBlock(
            dropblock_keep_prob, dropblock_size, dtype=self.dtype_policy, name="dropblock"
        )
        self._drop_connect = stochastic_depth.StochasticDepth(
            drop_connect_rate, dtype=self.dtype_policy, name="drop_connect"
        )
        self._convs = []
        self._norms = []
        for index, (multiplier, kernel_size, strided) in enumerate(self.conv_layout):
            self._convs.append(
                Conv2DFixedPadding(
                    multiplier * filters,
                    kernel_size,
                    strides if strided else 1,
                    dtype=self.dtype_policy,
                    name=f"conv{index}",
                )
            )
            # The last batch norm has no activation: it comes after the residual addition.
            self._norms.append(
                norm_activation.build(
                    apply_activation=index < len(self.conv_layout) - 1,
                    name=f"conv{index}_bn",
                    dtype=self.dtype_policy,
                )
            )

    def build(self, input_shape):
        # Weights in call order (projection first), so variable paths and order are those a
        # symbolic run of `call` would create, without the run.
        if self._projection is not None:
            self._projection.build(input_shape)
            self._projection_norm.build(self._projection.compute_output_shape(input_shape))
        shape = tuple(input_shape)
        for conv, norm in zip(self._convs, self._norms):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            norm.build(shape)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for conv in self._convs:
            shape = conv.compute_output_shape(shape)
        return shape

    def call(self, inputs, training=None):
        shortcut = inputs
        if self._projection is not None:
            shortcut = self._projection_norm(self._projection(inputs), training=training)
        shortcut = self._dropblock(shortcut, training=training)

        x = inputs
        for conv, norm in zip(self._convs, self._norms):
            x = norm(conv(x), training=training)
            x = self._dropblock(x, training=training)
        x = self._drop_connect(x, training=training)
        return self._activation_fn(x + shortcut)


class ResidualBlock(_Block):
    """Two 3x3 convolutions (ResNet-10/18/34).

    Input: `[batch, h, w, c]`; output: `[batch, ceil(h/strides),
    ceil(w/strides), filters]`.
    """

    expansion = 1
    # (output channels / filters, kernel size, carries the block's stride)
    conv_layout = ((1, 3, True), (1, 3, False))


class BottleneckBlock(_Block):
    """1x1 reduce, 3x3 (strided), 1x1 expand to `4 * filters` channels.

    Input: `[batch, h, w, c]`; output: `[batch, ceil(h/strides),
    ceil(w/strides), 4 * filters]`.
    """

    expansion = 4
    # The stride sits on the 3x3 conv, as in the original framework ("ResNet v1.5").
    conv_layout = ((1, 1, False), (1, 3, True), (4, 1, False))
