"""ResNet v1 backbone (post-activation), NHWC.

He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", arXiv:1512.03385: a
7x7/2 stem and max pool, then four groups of residual or bottleneck blocks
(`detection.modeling.layers.resnet_blocks`), as in the original TPU detection framework.
"""

import keras

from detection.modeling.layers import norm_activation as norm_lib
from detection.modeling.layers import stochastic_depth
from detection.modeling.layers.conv import Conv2DFixedPadding
from detection.modeling.layers.resnet_blocks import BottleneckBlock, ResidualBlock

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

    def build(self, input_shape):
        # Stem and blocks in call order, from the image shape: no symbolic run of `call`.
        self._stem_conv.build(input_shape)
        shape = self._stem_conv.compute_output_shape(input_shape)
        self._stem_norm.build(shape)
        shape = self._stem_pool.compute_output_shape(shape)
        for blocks in self._groups:
            for block in blocks:
                block.build(shape)
                shape = block.compute_output_shape(shape)

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
