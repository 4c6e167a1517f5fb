"""SpineNet-MBConv: the scale-permuted wiring with inverted-residual blocks.

Du et al. "SpineNet" (arXiv:1912.05027, section on mobile-size models) and "Efficient
Scale-Permuted Backbone with Learned Resource Distribution" (arXiv:2010.11426). Facts from
the original framework's `spinenet_mbconv` and TF Model Garden's SpineNet-Mobile:

- stem: 3x3/2 conv (8), then MBConv groups 8 -> 16 (level 1) and 16 -> 24 (level 2, /2);
- 16 searched MBConv blocks (expansion 6, 3x3 depthwise, squeeze-excitation `se_ratio`)
  over levels 2-7, outputs at levels 3-7;
- cross-scale connections: one 3x3/2 depthwise conv + batch norm + activation per level
  down, nearest upsampling up, then a linear 1x1 conv to the target width;
- widths `round_filters(FILTER_SIZE_MAP[level], filter_size_scale)` (multiples of 8).

Model ids: the original framework defines '49'; '49S' and '49XS' are TF Model Garden's
smaller scalings (Model Garden truncates the scaled widths with `int()`, the original
rounds them to multiples of 8; this module rounds for every id).
"""

import keras

from detection.modeling.backbones import scale_permuted
from detection.modeling.layers import mbconv, nearest_resize
from detection.modeling.layers.conv import Conv2DFixedPadding

EXPAND_RATIO = 6

FILTER_SIZE_MAP = {0: 8, 1: 16, 2: 24, 3: 40, 4: 80, 5: 112, 6: 112, 7: 112}

# (level, block_fn, (input_offset0, input_offset1), is_output); the stem outputs are
# features 0 (level 1) and 1 (level 2).
SPINENET_MBCONV_BLOCK_SPECS = scale_permuted.build_block_specs(
    [
        (2, "mbconv", (0, 1), False),
        (2, "mbconv", (1, 2), False),
        (4, "mbconv", (1, 2), False),
        (3, "mbconv", (3, 4), False),
        (4, "mbconv", (3, 5), False),
        (6, "mbconv", (4, 6), False),
        (4, "mbconv", (4, 6), False),
        (5, "mbconv", (7, 8), False),
        (7, "mbconv", (7, 9), False),
        (5, "mbconv", (9, 10), False),
        (5, "mbconv", (9, 11), False),
        (4, "mbconv", (6, 11), True),
        (3, "mbconv", (5, 11), True),
        (5, "mbconv", (8, 13), True),
        (7, "mbconv", (6, 15), True),
        (6, "mbconv", (13, 15), True),
    ]
)

SCALING_MAP = {
    "49": dict(endpoints_num_filters=48, filter_size_scale=1.0, block_repeats=1),
    "49S": dict(endpoints_num_filters=40, filter_size_scale=0.65, block_repeats=1),
    "49XS": dict(endpoints_num_filters=24, filter_size_scale=0.6, block_repeats=1),
}


def scaling_for(model_id):
    """The `SCALING_MAP` entry of `model_id` (case-insensitive), or a ValueError naming it."""
    return scale_permuted.scaling_for("spinenet_mbconv", SCALING_MAP, model_id)


class _ResampleWithSepconv(keras.layers.Layer):
    """Takes a feature to another level and width with depthwise convs / upsampling.

    Call: `(x [b, h, w, c_source], size=(h_t, w_t))` -> `[b, h_t, w_t, c_target]`.
    """

    def __init__(self, source, target, norm_activation, use_native_resize_op, **kwargs):
        super().__init__(**kwargs)
        policy = self.dtype_policy
        self._use_native_resize_op = use_native_resize_op
        self._downs = []
        self._down_norms = []
        for i in range(max(0, target.level - source.level)):
            self._downs.append(
                mbconv.DepthwiseConv2DFixedPadding(3, 2, dtype=policy, name=f"down_{i}")
            )
            self._down_norms.append(norm_activation.build(name=f"down_{i}_bn", dtype=policy))
        self._expand = mbconv.pointwise_conv(target.channels, "expand", policy)
        self._expand_norm = norm_activation.build(
            apply_activation=False, name="expand_bn", dtype=policy
        )

    def build(self, input_shape):
        # Sublayers build on their first call; without this override Keras would first run
        # the whole subtree symbolically to build it, at every level of nesting.
        pass

    def call(self, inputs, size, training=None):
        x = inputs
        for down, norm in zip(self._downs, self._down_norms):
            x = norm(down(x), training=training)
        x = nearest_resize.resize_nearest(x, size, self._use_native_resize_op)
        return self._expand_norm(self._expand(x), training=training)


class SpineNetMBConv(scale_permuted.ScalePermutedBackbone):
    """SpineNet-MBConv feature extractor with endpoints at levels `min_level..max_level`.

    Call: `images [batch, H, W, 3]` -> `{'3': [batch, ceil(H/8), ceil(W/8),
    endpoints_num_filters], ..., '7': [...]}`.
    """

    def __init__(
        self,
        model_id="49",
        min_level=3,
        max_level=7,
        norm_activation=None,
        se_ratio=0.2,
        init_drop_connect_rate=None,
        use_native_resize_op=False,
        endpoints_num_filters=None,
        filter_size_scale=None,
        block_repeats=None,
        block_specs=SPINENET_MBCONV_BLOCK_SPECS,
        **kwargs,
    ):
        """Initializes the backbone.

        Args:
          model_id: '49', '49S' or '49XS' (`SCALING_MAP`).
          min_level: finest endpoint level.
          max_level: coarsest endpoint level; the specs output exactly levels 3-7.
          norm_activation: a `NormActivationConfig` (batch norms, block activations and the
            activation after each cross-scale fusion).
          se_ratio: squeeze-and-excitation ratio of every MBConv block; None or 0 disables
            SE.
          init_drop_connect_rate: stochastic depth rate of the last block; block `i` (of
            n) uses `rate * (i + 1) / n`; None disables it.
          use_native_resize_op: upsample with `tf.image.resize` instead of repeats.
          endpoints_num_filters: overrides the model id's endpoint width.
          filter_size_scale: overrides the model id's width multiplier.
          block_repeats: overrides the model id's blocks per group.
          block_specs: the searched architecture (`BlockSpec`s).
          **kwargs: `keras.layers.Layer` arguments.

        Raises:
          ValueError: on an unknown model id or an invalid value (the message names it).
        """
        scaling = scale_permuted.resolve_scaling(
            "spinenet_mbconv",
            SCALING_MAP,
            model_id,
            dict(
                endpoints_num_filters=endpoints_num_filters,
                filter_size_scale=filter_size_scale,
                block_repeats=block_repeats,
            ),
        )
        kwargs.setdefault("name", f"spinenet_mbconv{str(model_id).upper()}")
        super().__init__(
            block_specs,
            min_level,
            max_level,
            scaling["endpoints_num_filters"],
            norm_activation=norm_activation,
            init_drop_connect_rate=init_drop_connect_rate,
            **kwargs,
        )
        if se_ratio is not None and not 0.0 <= se_ratio <= 1.0:
            raise ValueError(f"spinenet_mbconv.se_ratio: must be in [0, 1], got {se_ratio!r}")
        for spec in block_specs:
            if spec.block_fn != "mbconv":
                raise ValueError(f"block_specs: block_fn {spec.block_fn!r} is not 'mbconv'")
        self._scaling = scaling
        self._se_ratio = se_ratio
        self._use_native_resize_op = use_native_resize_op
        self._block_repeats = int(scaling["block_repeats"])

        policy = self.dtype_policy
        self._stem_conv = Conv2DFixedPadding(self._filters(0), 3, 2, dtype=policy, name="stem_conv")
        self._stem_norm = self._norm_activation.build(name="stem_bn", dtype=policy)
        self._stem_groups = [
            self._group(self._filters(0), self._filters(1), 1, None, "stem_block_0"),
            self._group(self._filters(1), self._filters(2), 2, None, "stem_block_1"),
        ]
        self._build_network()

    @property
    def scaling(self):
        """The resolved endpoints_num_filters, filter_size_scale and block_repeats."""
        return dict(self._scaling)

    def _filters(self, level):
        return mbconv.round_filters(FILTER_SIZE_MAP[level], self._scaling["filter_size_scale"])

    def _group(self, in_filters, out_filters, strides, drop_connect_rate, name):
        blocks = [
            mbconv.MBConvBlock(
                in_filters if i == 0 else out_filters,
                out_filters,
                EXPAND_RATIO,
                strides if i == 0 else 1,
                kernel_size=3,
                se_ratio=self._se_ratio,
                norm_activation=self._norm_activation,
                drop_connect_rate=drop_connect_rate,
                dtype=self.dtype_policy,
                name=f"{name}_{i}",
            )
            for i in range(self._block_repeats)
        ]
        return scale_permuted.BlockGroup(blocks, dtype=self.dtype_policy, name=name)

    def _stem_features(self):
        return [
            scale_permuted.Feature(1, self._filters(1), "mbconv"),
            scale_permuted.Feature(2, self._filters(2), "mbconv"),
        ]

    def _call_stem(self, images, training):
        x = self._stem_norm(self._stem_conv(images), training=training)
        features = []
        for group in self._stem_groups:
            x = group(x, training=training)
            features.append(x)
        return features

    def _block_channels(self, spec):
        return self._filters(spec.level)

    def _build_resample(self, source, target, name):
        return _ResampleWithSepconv(
            source,
            target,
            self._norm_activation,
            self._use_native_resize_op,
            dtype=self.dtype_policy,
            name=name,
        )

    def _build_block(self, spec, channels, drop_connect_rate, name):
        return self._group(channels, channels, 1, drop_connect_rate, name)
