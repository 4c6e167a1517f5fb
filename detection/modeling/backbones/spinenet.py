"""SpineNet: the scale-permuted backbone with residual and bottleneck blocks.

Du et al. "SpineNet: Learning Scale-Permuted Backbone for Recognition and Localization",
CVPR 2020 (arXiv:1912.05027). Block specifications, widths and per-model scaling are the
published ones (paper Table 1 and the original framework's model zoo):

- stem: 7x7/2 conv (64) + max pool 3x3/2, then two level-2 bottleneck groups;
- 15 searched blocks over levels 2-7 (`SPINENET_BLOCK_SPECS`), outputs at levels 3-7;
- cross-scale connections (`_ResampleWithAlpha`): a 1x1 conv to `alpha` times the parent's
  bottleneck width, a 3x3/2 conv (+ max pool for larger ratios) down or nearest
  upsampling up, then a linear 1x1 conv to the target block's input width;
- `filter_size_scale` scales the per-level widths, `block_repeats` the blocks per group.
"""

import keras
import tensorflow as tf

from detection.modeling.backbones import scale_permuted
from detection.modeling.layers import mbconv, nearest_resize
from detection.modeling.layers.conv import Conv2DFixedPadding
from detection.modeling.layers.resnet_blocks import BottleneckBlock, ResidualBlock

# Base block width per level (a bottleneck block outputs 4x this).
FILTER_SIZE_MAP = {1: 32, 2: 64, 3: 128, 4: 256, 5: 256, 6: 256, 7: 256}

# (level, block_fn, (input_offset0, input_offset1), is_output); offsets index the feature
# list, whose first two entries are the stem outputs.
SPINENET_BLOCK_SPECS = scale_permuted.build_block_specs(
    [
        (2, "bottleneck", (0, 1), False),
        (4, "residual", (0, 1), False),
        (3, "bottleneck", (2, 3), False),
        (4, "bottleneck", (2, 4), False),
        (6, "residual", (3, 5), False),
        (4, "bottleneck", (3, 5), False),
        (5, "residual", (6, 7), False),
        (7, "residual", (6, 8), False),
        (5, "bottleneck", (8, 9), False),
        (5, "bottleneck", (8, 10), False),
        (4, "bottleneck", (5, 10), True),
        (3, "bottleneck", (4, 10), True),
        (5, "bottleneck", (7, 12), True),
        (7, "bottleneck", (5, 14), True),
        (6, "bottleneck", (12, 14), True),
    ]
)

# model_id -> scaling. '143L' (SpineNet-143 at 1.3x width) is defined by the original
# framework (spelled '143l' there) and by TF Model Garden ('143L'); both spellings work.
SCALING_MAP = {
    "49S": dict(
        endpoints_num_filters=128, filter_size_scale=0.65, resample_alpha=0.5, block_repeats=1
    ),
    "49": dict(
        endpoints_num_filters=256, filter_size_scale=1.0, resample_alpha=0.5, block_repeats=1
    ),
    "96": dict(
        endpoints_num_filters=256, filter_size_scale=1.0, resample_alpha=0.5, block_repeats=2
    ),
    "143": dict(
        endpoints_num_filters=256, filter_size_scale=1.0, resample_alpha=1.0, block_repeats=3
    ),
    "143L": dict(
        endpoints_num_filters=256, filter_size_scale=1.3, resample_alpha=1.0, block_repeats=3
    ),
    "190": dict(
        endpoints_num_filters=512, filter_size_scale=1.3, resample_alpha=1.0, block_repeats=4
    ),
}

_BLOCKS = {"bottleneck": BottleneckBlock, "residual": ResidualBlock}


def scaling_for(model_id):
    """The `SCALING_MAP` entry of `model_id` (case-insensitive), or a ValueError naming it."""
    return scale_permuted.scaling_for("spinenet", SCALING_MAP, model_id)


def _expansion(block_fn):
    return _BLOCKS[block_fn].expansion


class _ResampleWithAlpha(keras.layers.Layer):
    """Takes a feature to another level and block width.

    Call: `(x [b, h, w, c_source], size=(h_t, w_t))` -> `[b, h_t, w_t, c_target]`.
    """

    def __init__(
        self,
        source,
        target,
        alpha,
        norm_activation,
        use_native_resize_op,
        **kwargs,
    ):
        super().__init__(**kwargs)
        policy = self.dtype_policy
        # alpha scales the parent's *base* width (bottleneck outputs are 4x wider).
        reduced = int(source.channels / _expansion(source.block_fn) * alpha)
        if reduced < 1:
            raise ValueError(f"resample_alpha: {alpha} leaves no channels for {source}")
        self._use_native_resize_op = use_native_resize_op
        self._reduce = mbconv.pointwise_conv(reduced, "reduce", policy)
        self._reduce_norm = norm_activation.build(name="reduce_bn", dtype=policy)
        self._down = None
        if source.level < target.level:
            self._down = Conv2DFixedPadding(reduced, 3, 2, dtype=policy, name="down")
            self._down_norm = norm_activation.build(name="down_bn", dtype=policy)
        self._expand = mbconv.pointwise_conv(target.channels, "expand", policy)
        self._expand_norm = norm_activation.build(
            apply_activation=False, name="expand_bn", dtype=policy
        )

    def build(self, input_shape):
        # Sublayers build on their first call; without this override Keras would first run
        # the whole subtree symbolically to build it, at every level of nesting.
        pass

    def call(self, inputs, size, training=None):
        x = self._reduce_norm(self._reduce(inputs), training=training)
        if self._down is not None:
            width = x.shape[2]
            x = self._down_norm(self._down(x), training=training)
            # Beyond 2x, a max pool finishes the job: 3x3 for 4x, 5x5 for 8x and more,
            # with the stride that lands on the target when the sizes divide.
            ratio = width // size[1]
            if ratio > 2:
                stride = ratio // 2 if width % size[1] == 0 else 2
                pool = 3 if width <= 4 * size[1] else 5
                x = tf.nn.max_pool2d(x, ksize=pool, strides=stride, padding="SAME")
        x = nearest_resize.resize_nearest(x, size, self._use_native_resize_op)
        return self._expand_norm(self._expand(x), training=training)


class SpineNet(scale_permuted.ScalePermutedBackbone):
    """SpineNet feature extractor with endpoints at levels `min_level..max_level`.

    Call: `images [batch, H, W, 3]` -> `{'3': [batch, ceil(H/8), ceil(W/8),
    endpoints_num_filters], ..., '7': [batch, ceil(H/128), ceil(W/128), ...]}`.
    """

    def __init__(
        self,
        model_id="49",
        min_level=3,
        max_level=7,
        norm_activation=None,
        init_drop_connect_rate=None,
        use_native_resize_op=False,
        endpoints_num_filters=None,
        filter_size_scale=None,
        resample_alpha=None,
        block_repeats=None,
        block_specs=SPINENET_BLOCK_SPECS,
        **kwargs,
    ):
        """Initializes the backbone.

        Args:
          model_id: '49S', '49', '96', '143', '143L' or '190' (`SCALING_MAP`).
          min_level: finest endpoint level.
          max_level: coarsest endpoint level; the specs output exactly levels 3-7.
          norm_activation: a `NormActivationConfig`; its activation is also the one after
            each cross-scale fusion and in the residual blocks.
          init_drop_connect_rate: stochastic depth rate of the last block; block `i` (of
            n) uses `rate * (i + 1) / n`; None disables it.
          use_native_resize_op: upsample with `tf.image.resize` instead of repeats.
          endpoints_num_filters: overrides the model id's endpoint width.
          filter_size_scale: overrides the model id's width multiplier.
          resample_alpha: overrides the model id's cross-scale reduction.
          block_repeats: overrides the model id's blocks per group.
          block_specs: the searched architecture (`BlockSpec`s).
          **kwargs: `keras.layers.Layer` arguments.

        Raises:
          ValueError: on an unknown model id or an invalid value (the message names it).
        """
        scaling = scale_permuted.resolve_scaling(
            "spinenet",
            SCALING_MAP,
            model_id,
            dict(
                endpoints_num_filters=endpoints_num_filters,
                filter_size_scale=filter_size_scale,
                resample_alpha=resample_alpha,
                block_repeats=block_repeats,
            ),
        )
        kwargs.setdefault("name", f"spinenet{str(model_id).upper()}")
        super().__init__(
            block_specs,
            min_level,
            max_level,
            scaling["endpoints_num_filters"],
            norm_activation=norm_activation,
            init_drop_connect_rate=init_drop_connect_rate,
            **kwargs,
        )
        for spec in block_specs:
            if spec.block_fn not in _BLOCKS:
                raise ValueError(
                    f"block_specs: block_fn {spec.block_fn!r} is not one of {sorted(_BLOCKS)}"
                )
        self._scaling = scaling
        self._use_native_resize_op = use_native_resize_op
        self._filter_size_scale = scaling["filter_size_scale"]
        self._block_repeats = int(scaling["block_repeats"])

        policy = self.dtype_policy
        stem_filters = self._filters(2)
        self._stem_conv = Conv2DFixedPadding(64, 7, 2, dtype=policy, name="stem_conv")
        self._stem_norm = self._norm_activation.build(name="stem_bn", dtype=policy)
        self._stem_pool = keras.layers.MaxPooling2D(
            pool_size=3, strides=2, padding="same", dtype=policy, name="stem_pool"
        )
        self._stem_groups = [
            self._group("bottleneck", stem_filters, in_channels, None, f"stem_block_{i}")
            for i, in_channels in enumerate((64, 4 * stem_filters))
        ]
        self._build_network()

    @property
    def scaling(self):
        """The resolved endpoints_num_filters, filter_size_scale, resample_alpha, block_repeats."""
        return dict(self._scaling)

    def _filters(self, level):
        return int(FILTER_SIZE_MAP[level] * self._filter_size_scale)

    def _group(self, block_fn, filters, in_channels, drop_connect_rate, name):
        block_cls = _BLOCKS[block_fn]
        blocks = []
        for i in range(self._block_repeats):
            channels = in_channels if i == 0 else filters * block_cls.expansion
            blocks.append(
                block_cls(
                    filters,
                    strides=1,
                    # Only a group's first block may change the width (the stem's first).
                    use_projection=channels != filters * block_cls.expansion,
                    norm_activation=self._norm_activation,
                    drop_connect_rate=drop_connect_rate,
                    dtype=self.dtype_policy,
                    name=f"{name}_{i}",
                )
            )
        return scale_permuted.BlockGroup(blocks, dtype=self.dtype_policy, name=name)

    def _stem_features(self):
        channels = 4 * self._filters(2)
        return [scale_permuted.Feature(2, channels, "bottleneck")] * 2

    def _call_stem(self, images, training):
        x = self._stem_norm(self._stem_conv(images), training=training)
        x = self._stem_pool(x)
        features = []
        for group in self._stem_groups:
            x = group(x, training=training)
            features.append(x)
        return features

    def _block_channels(self, spec):
        return self._filters(spec.level) * _expansion(spec.block_fn)

    def _build_resample(self, source, target, name):
        return _ResampleWithAlpha(
            source,
            target,
            self._scaling["resample_alpha"],
            self._norm_activation,
            self._use_native_resize_op,
            dtype=self.dtype_policy,
            name=name,
        )

    def _build_block(self, spec, channels, drop_connect_rate, name):
        return self._group(
            spec.block_fn, self._filters(spec.level), channels, drop_connect_rate, name
        )
