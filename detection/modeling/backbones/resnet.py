"""ResNet v1 backbone (post-activation), NHWC.

He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition",
arXiv:1512.03385. As in the original TPU detection framework, a bottleneck
block downsamples with its 3x3 convolution (the variant often called
"ResNet v1.5"), convolutions have no bias, strided convolutions pad
explicitly by `kernel_size - 1` (so the output size never depends on the input
size's parity), and every batch norm is followed by an optional DropBlock.
"""

import keras

from detection.modeling.layers import dropblock as dropblock_lib
from detection.modeling.layers import norm_activation as norm_lib
from detection.modeling.layers import stochastic_depth

# depth -> (block type, number of blocks in each of the 4 groups).
RESNET_SPECS = {
    10: ("residual", (1, 1, 1, 1)),
    14: ("bottleneck", (1, 1, 1, 1)),
    18: ("residual", (2, 2, 2, 2)),
    26: ("bottleneck", (2, 2, 2, 2)),
    34: ("residual", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}

_GROUP_FILTERS = (64, 128, 256, 512)


class Conv2DFixedPadding(keras.layers.Layer):
    """Bias-free convolution whose padding depends only on the kernel size.

    Stride 1 uses 'same' padding; larger strides pad `kernel_size - 1` pixels
    (the extra one at the bottom/right) then use 'valid', giving
    `ceil(size / stride)` outputs.

    Input: `[batch, h, w, c_in]`; output: `[batch, ceil(h/s), ceil(w/s),
    filters]`.
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

    def call(self, inputs):
        if self._pad is not None:
            inputs = self._pad(inputs)
        return self._conv(inputs)


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


class ResNet(keras.layers.Layer):
    """ResNet v1 feature extractor returning C2..C5.

    Call: `images [batch, H, W, 3]` -> `{'2': [batch, H/4, W/4, c2],
    '3': [batch, H/8, W/8, c3], '4': [.., H/16, .., c4],
    '5': [.., H/32, .., c5]}` (sizes rounded up), with channels
    64/128/256/512 for basic blocks and 256/512/1024/2048 for bottlenecks.
    """

    def __init__(
        self,
        resnet_depth,
        norm_activation=None,
        init_drop_connect_rate=None,
        dropblock_keep_prob=None,
        dropblock_size=None,
        **kwargs,
    ):
        """Initializes the backbone.

        Args:
          resnet_depth: one of `RESNET_SPECS` (10, 14, 18, 26, 34, 50, 101,
            152, 200).
          norm_activation: a `NormActivationConfig` (batch norm settings and
            'relu'/'swish'); defaults to the original framework's defaults.
          init_drop_connect_rate: stochastic depth rate of the last group
            (C5); group Ci uses `rate * i / 5`. None disables it.
          dropblock_keep_prob: DropBlock keep probability applied after every
            batch norm of every block (as the original framework); None
            disables it.
          dropblock_size: DropBlock square side.
          **kwargs: `keras.layers.Layer` arguments.

        Raises:
          ValueError: on an unsupported depth or option value.
        """
        kwargs.setdefault("name", f"resnet{resnet_depth}")
        super().__init__(**kwargs)
        if resnet_depth not in RESNET_SPECS:
            raise ValueError(
                f"resnet_depth: unsupported value {resnet_depth!r}; expected "
                f"one of {sorted(RESNET_SPECS)}"
            )
        norm_activation = norm_activation or norm_lib.NormActivationConfig()
        block_type, repeats = RESNET_SPECS[resnet_depth]
        block_cls = BottleneckBlock if block_type == "bottleneck" else ResidualBlock
        self._resnet_depth = resnet_depth

        policy = self.dtype_policy
        self._stem_conv = Conv2DFixedPadding(64, 7, 2, dtype=policy, name="stem_conv")
        self._stem_norm = norm_activation.build(name="stem_bn", dtype=policy)
        self._stem_pool = keras.layers.MaxPooling2D(
            pool_size=3, strides=2, padding="same", dtype=policy, name="stem_pool"
        )

        self._groups = []
        for group_index, (filters, num_blocks) in enumerate(zip(_GROUP_FILTERS, repeats)):
            level = group_index + 2
            rate = stochastic_depth.get_drop_connect_rate(init_drop_connect_rate, level, 5)
            blocks = []
            for block_index in range(num_blocks):
                first = block_index == 0
                blocks.append(
                    block_cls(
                        filters,
                        strides=(1 if level == 2 else 2) if first else 1,
                        use_projection=first,
                        norm_activation=norm_activation,
                        dropblock_keep_prob=dropblock_keep_prob,
                        dropblock_size=dropblock_size,
                        drop_connect_rate=rate,
                        dtype=policy,
                        name=f"group{group_index + 1}_block{block_index}",
                    )
                )
            self._groups.append(blocks)
        self._output_channels = {
            str(level): filters * block_cls.expansion
            for level, filters in zip(range(2, 6), _GROUP_FILTERS)
        }

    @property
    def output_channels(self):
        """`{'2': c2, ..., '5': c5}` channel counts of the outputs."""
        return dict(self._output_channels)

    def call(self, images, training=None):
        x = self._stem_conv(images)
        x = self._stem_norm(x, training=training)
        x = self._stem_pool(x)
        features = {}
        for level, blocks in zip(range(2, 6), self._groups):
            for block in blocks:
                x = block(x, training=training)
            features[str(level)] = x
        return features
