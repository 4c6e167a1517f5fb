"""EfficientNet b0-b7 as a multilevel feature extractor (no classification top).

Tan, Le. "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML
2019 (arXiv:1905.11946). The b0 stages (paper Table 1) scaled by the compound coefficients
of the official implementation: widths `round_filters(c, width)`, repeats
`ceil(depth * r)`. As the official builder the original framework wrapped:

- TensorFlow 'same' padding and N(0, sqrt(2 / fan_out)) kernels (`padding='same'` blocks);
- stem: 3x3/2 conv to `round_filters(32)`, batch norm + swish;
- seven stages of MBConv blocks with squeeze-excitation 0.25; a stage's first block carries
  its stride and width change;
- stochastic depth: block `i` of all `n` blocks drops its residual branch with rate
  `drop_connect_rate * i / n` (0 for the first block);
- batch norm momentum 0.99, epsilon 1e-3, swish everywhere (the original ignored the
  `batch_norm_activation` params for this backbone).

The 1x1 head conv, pooling, dropout and the classifier are the classification top and are
not built. Outputs are the last block of each stride: levels 2-5 (`reduction_2..5` of the
official endpoints); decoders build coarser levels themselves.
"""

import math

import keras

from detection.modeling.layers import conv as conv_lib
from detection.modeling.layers import mbconv
from detection.modeling.layers import norm_activation as norm_lib

# name -> (width coefficient, depth coefficient, resolution, dropout rate). The resolution
# is the published input size; the dropout belongs to the (unbuilt) classification top.
EFFICIENTNET_PARAMS = {
    "efficientnet-b0": (1.0, 1.0, 224, 0.2),
    "efficientnet-b1": (1.0, 1.1, 240, 0.2),
    "efficientnet-b2": (1.1, 1.2, 260, 0.3),
    "efficientnet-b3": (1.2, 1.4, 300, 0.3),
    "efficientnet-b4": (1.4, 1.8, 380, 0.4),
    "efficientnet-b5": (1.6, 2.2, 456, 0.4),
    "efficientnet-b6": (1.8, 2.6, 528, 0.5),
    "efficientnet-b7": (2.0, 3.1, 600, 0.5),
}

STEM_FILTERS = 32

# b0 stages: (repeats, kernel size, stride, expand ratio, output filters, output level).
B0_STAGES = (
    (1, 3, 1, 1, 16, 1),
    (2, 3, 2, 6, 24, 2),
    (2, 5, 2, 6, 40, 3),
    (3, 3, 2, 6, 80, 4),
    (3, 5, 1, 6, 112, 4),
    (4, 5, 2, 6, 192, 5),
    (1, 3, 1, 6, 320, 5),
)
SE_RATIO = 0.25

# Official EfficientNet batch norm and activation.
DEFAULT_NORM_ACTIVATION = norm_lib.NormActivationConfig(
    momentum=0.99, epsilon=1e-3, activation="swish"
)


def round_repeats(repeats, depth_coefficient):
    """Blocks of a stage after depth scaling: `ceil(depth_coefficient * repeats)`."""
    return int(math.ceil(depth_coefficient * repeats))


class EfficientNet(keras.layers.Layer):
    """EfficientNet feature extractor.

    Call: `images [batch, H, W, 3]` -> `{'2': [batch, ceil(H/4), ceil(W/4), c2], '3':
    [.., H/8, ..], '4': [.., H/16, ..], '5': [.., H/32, .., c5]}` (sizes rounded up); for b0
    the channels are 24, 40, 112, 320 (`output_channels`).
    """

    def __init__(
        self,
        model_name="efficientnet-b0",
        norm_activation=None,
        drop_connect_rate=0.2,
        width_coefficient=None,
        depth_coefficient=None,
        **kwargs,
    ):
        """Initializes the backbone.

        Args:
          model_name: 'efficientnet-b0' .. 'efficientnet-b7' (`architecture.backbone`).
          norm_activation: a `NormActivationConfig`; defaults to the official batch norm
            (momentum 0.99, epsilon 1e-3) and swish.
          drop_connect_rate: stochastic depth rate reached by the last block; None or 0
            disables it.
          width_coefficient: overrides the model's width multiplier (for tiny tests).
          depth_coefficient: overrides the model's depth multiplier.
          **kwargs: `keras.layers.Layer` arguments.

        Raises:
          ValueError: on an unknown model name or an invalid value.
        """
        if model_name not in EFFICIENTNET_PARAMS:
            raise ValueError(
                f"architecture.backbone: unsupported EfficientNet {model_name!r}; expected one "
                f"of {sorted(EFFICIENTNET_PARAMS)}"
            )
        kwargs.setdefault("name", model_name.replace("-", "_"))
        super().__init__(**kwargs)
        width, depth, resolution, _ = EFFICIENTNET_PARAMS[model_name]
        width = width if width_coefficient is None else width_coefficient
        depth = depth if depth_coefficient is None else depth_coefficient
        if not width > 0 or not depth > 0:
            raise ValueError(
                f"efficientnet: width/depth coefficients must be > 0, got {width} and {depth}"
            )
        if drop_connect_rate is not None and not 0.0 <= drop_connect_rate < 1.0:
            raise ValueError(
                f"efficientnet.drop_connect_rate: must be in [0, 1), got {drop_connect_rate}"
            )
        self._model_name = model_name
        self._resolution = resolution
        norm_activation = norm_activation or DEFAULT_NORM_ACTIVATION
        policy = self.dtype_policy

        stem_filters = mbconv.round_filters(STEM_FILTERS, width)
        self._stem_conv = conv_lib.Conv2D(
            stem_filters,
            3,
            strides=2,
            padding="same",
            use_bias=False,
            kernel_initializer=mbconv.efficientnet_kernel_initializer(),
            dtype=policy,
            name="stem_conv",
        )
        self._stem_norm = norm_activation.build(name="stem_bn", dtype=policy)

        stages = [
            (round_repeats(r, depth), k, s, e, mbconv.round_filters(c, width), level)
            for r, k, s, e, c, level in B0_STAGES
        ]
        num_blocks = sum(stage[0] for stage in stages)
        self._stages = []
        self._stage_levels = []
        in_filters = stem_filters
        index = 0
        for stage_index, (repeats, kernel, stride, expand, filters, level) in enumerate(stages):
            blocks = []
            for i in range(repeats):
                rate = drop_connect_rate * index / num_blocks if drop_connect_rate else None
                blocks.append(
                    mbconv.MBConvBlock(
                        in_filters,
                        filters,
                        expand,
                        stride if i == 0 else 1,
                        kernel_size=kernel,
                        se_ratio=SE_RATIO,
                        norm_activation=norm_activation,
                        drop_connect_rate=rate,
                        padding="same",
                        dtype=policy,
                        name=f"stage{stage_index}_block{i}",
                    )
                )
                in_filters = filters
                index += 1
            self._stages.append(blocks)
            self._stage_levels.append(level)
        self._num_blocks = num_blocks
        # The last stage of each level is that level's output.
        self._output_stage = {level: i for i, level in enumerate(self._stage_levels)}
        self._output_channels = {
            str(level): stages[i][4] for level, i in self._output_stage.items() if level >= 2
        }

    def build(self, input_shape):
        # Sublayers build on their first call; without this override Keras would first run
        # the whole subtree symbolically to build it, at every level of nesting.
        pass

    @property
    def output_channels(self):
        """`{'2': c2, ..., '5': c5}` channel counts of the outputs."""
        return dict(self._output_channels)

    @property
    def resolution(self):
        """The published input size of the model (e.g. 600 for b7)."""
        return self._resolution

    @property
    def num_blocks(self):
        """Number of MBConv blocks after depth scaling."""
        return self._num_blocks

    @property
    def blocks(self):
        """All MBConv blocks, in order."""
        return [block for blocks in self._stages for block in blocks]

    def call(self, images, training=None):
        x = self._stem_norm(self._stem_conv(images), training=training)
        features = {}
        for stage_index, blocks in enumerate(self._stages):
            for block in blocks:
                x = block(x, training=training)
            level = self._stage_levels[stage_index]
            if level >= 2 and self._output_stage[level] == stage_index:
                features[str(level)] = x
        return features
