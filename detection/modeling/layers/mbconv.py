"""Inverted-residual (MBConv) block with squeeze-and-excitation.

Sandler et al. "MobileNetV2", CVPR 2018; Tan et al. "MnasNet" (CVPR 2019) and
"EfficientNet" (ICML 2019). As the original TPU framework and the official EfficientNet:

- a 1x1 expansion to `in_filters * expand_ratio` channels (skipped when the ratio is 1),
  batch norm + activation;
- a `kernel_size` depthwise convolution carrying the stride, batch norm + activation;
- optional squeeze-and-excitation sized from `in_filters`;
- a linear 1x1 projection to `out_filters`, batch norm without activation;
- the identity shortcut (with stochastic depth on the residual branch) only when the block
  keeps both the channels and the resolution. No activation after the addition.

Convolutions have no bias. Two conventions exist: `padding='fixed'` (the original
framework's blocks, used by SpineNet-MBConv): strided convolutions pad explicitly by
`kernel_size - 1` like `Conv2DFixedPadding`, kernels start from its variance scaling; and
`padding='same'` (the official EfficientNet): TensorFlow 'same' padding and kernels from
N(0, sqrt(2 / fan_out)). Output sizes are `ceil(size / stride)` either way.
"""

import keras

from detection.modeling.layers import conv as conv_lib
from detection.modeling.layers import norm_activation as norm_lib
from detection.modeling.layers import squeeze_excitation
from detection.modeling.layers import stochastic_depth


PADDINGS = ("fixed", "same")


def efficientnet_kernel_initializer():
    """N(0, sqrt(2 / fan_out)), the official EfficientNet convolution initializer."""
    return keras.initializers.VarianceScaling(
        2.0, mode="fan_out", distribution="untruncated_normal"
    )


def pointwise_conv(filters, name, dtype=None, kernel_initializer=None):
    """Bias-free 1x1 convolution, `[b, h, w, c] -> [b, h, w, filters]`.

    The same layer as `Conv2DFixedPadding(filters, 1, 1)` (padding plays no part at 1x1,
    stride 1; same default variance-scaling initializer), as a single Keras layer: cheaper to
    build than the wrapper.
    """
    return conv_lib.Conv2D(
        filters,
        1,
        use_bias=False,
        kernel_initializer=kernel_initializer or keras.initializers.VarianceScaling(),
        dtype=dtype,
        name=name,
    )


def round_filters(filters, multiplier, divisor=8):
    """Scales a channel count by `multiplier` and rounds it to a multiple of `divisor`.

    The rounding of MnasNet/EfficientNet: to the nearest multiple of `divisor` (at least
    `divisor`), bumped up one step if that lost more than 10% of the scaled width.

    Args:
      filters: base channel count.
      multiplier: width multiplier; a falsy value returns `filters` unchanged.
      divisor: channel granularity.

    Returns:
      The scaled channel count, an int.
    """
    if not multiplier:
        return int(filters)
    scaled = filters * multiplier
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


class DepthwiseConv2DFixedPadding(keras.layers.Layer):
    """Bias-free depthwise convolution (depth multiplier 1) with size-independent padding.

    Stride 1 uses 'same' padding; larger strides pad `kernel_size - 1` pixels (the extra one
    at the bottom/right) then use 'valid'.

    Input: `[batch, h, w, c]`; output: `[batch, ceil(h/s), ceil(w/s), c]`.
    """

    def __init__(self, kernel_size, strides, **kwargs):
        super().__init__(**kwargs)
        self._pad = None
        if strides > 1:
            total = kernel_size - 1
            self._pad = keras.layers.ZeroPadding2D(
                ((total // 2, total - total // 2), (total // 2, total - total // 2)),
                dtype=self.dtype_policy,
                name="pad",
            )
        self._conv = keras.layers.DepthwiseConv2D(
            kernel_size,
            strides=strides,
            padding="same" if strides == 1 else "valid",
            use_bias=False,
            dtype=self.dtype_policy,
            name="depthwise",
        )

    def build(self, input_shape):
        # Sublayers build on their first call; without this override Keras would first run
        # the whole subtree symbolically to build it, at every level of nesting.
        pass

    @property
    def kernel(self):
        """`[k, k, c, 1]` depthwise kernel."""
        return self._conv.kernel

    def call(self, inputs):
        if self._pad is not None:
            inputs = self._pad(inputs)
        return self._conv(inputs)


class MBConvBlock(keras.layers.Layer):
    """Expand 1x1 -> depthwise kxk (strided) -> SE -> project 1x1 (+ identity shortcut).

    Input: `[batch, h, w, in_filters]`; output: `[batch, ceil(h/strides),
    ceil(w/strides), out_filters]`.
    """

    def __init__(
        self,
        in_filters,
        out_filters,
        expand_ratio,
        strides,
        kernel_size=3,
        se_ratio=None,
        norm_activation=None,
        drop_connect_rate=None,
        padding="fixed",
        **kwargs,
    ):
        """Initializes the block.

        Args:
          in_filters: input channels.
          out_filters: output channels.
          expand_ratio: expansion of the hidden width (`in_filters * expand_ratio`).
          strides: stride of the depthwise convolution (1 or 2).
          kernel_size: depthwise kernel size.
          se_ratio: squeeze-and-excitation ratio in (0, 1]; None or 0 disables SE.
          norm_activation: a `NormActivationConfig` (batch norm settings and activation).
          drop_connect_rate: stochastic depth rate of the residual branch (only used when the
            block has a shortcut); None disables it.
          padding: 'fixed' (original framework) or 'same' (official EfficientNet), see the
            module docstring.
          **kwargs: `keras.layers.Layer` arguments.

        Raises:
          ValueError: on invalid sizes, ratios or padding.
        """
        super().__init__(**kwargs)
        for key, value in (
            ("in_filters", in_filters),
            ("out_filters", out_filters),
            ("expand_ratio", expand_ratio),
            ("strides", strides),
            ("kernel_size", kernel_size),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"mbconv: {key} must be a positive integer, got {value!r}")
        if padding not in PADDINGS:
            raise ValueError(f"mbconv: padding must be one of {PADDINGS}, got {padding!r}")
        norm_activation = norm_activation or norm_lib.NormActivationConfig()
        policy = self.dtype_policy
        self._in_filters = int(in_filters)
        self._strides = int(strides)
        self._has_shortcut = in_filters == out_filters and strides == 1
        if padding == "fixed":
            initializer = None
            self._depthwise = DepthwiseConv2DFixedPadding(
                kernel_size, strides, dtype=policy, name="depthwise"
            )
        else:
            initializer = efficientnet_kernel_initializer()
            self._depthwise = keras.layers.DepthwiseConv2D(
                kernel_size,
                strides=strides,
                padding="same",
                use_bias=False,
                depthwise_initializer=initializer,
                dtype=policy,
                name="depthwise",
            )
        self._expand = None
        if expand_ratio != 1:
            self._expand = pointwise_conv(
                in_filters * expand_ratio, "expand", policy, kernel_initializer=initializer
            )
            self._expand_norm = norm_activation.build(name="expand_bn", dtype=policy)
        self._depthwise_norm = norm_activation.build(name="depthwise_bn", dtype=policy)
        self._se = None
        if se_ratio:
            self._se = squeeze_excitation.SqueezeExcitation(
                in_filters,
                se_ratio,
                expand_ratio,
                kernel_initializer=initializer,
                dtype=policy,
                name="se",
            )
        self._project = pointwise_conv(
            out_filters, "project", policy, kernel_initializer=initializer
        )
        self._project_norm = norm_activation.build(
            apply_activation=False, name="project_bn", dtype=policy
        )
        self._drop_connect = stochastic_depth.StochasticDepth(
            drop_connect_rate if self._has_shortcut else None, dtype=policy, name="drop_connect"
        )

    @property
    def has_shortcut(self):
        """True when the block adds its input (same channels, stride 1)."""
        return self._has_shortcut

    def build(self, input_shape):
        if input_shape[-1] != self._in_filters:
            raise ValueError(
                f"mbconv {self.name}: expects {self._in_filters} input channels, got "
                f"{input_shape[-1]}"
            )

    def call(self, inputs, training=None):
        x = inputs
        if self._expand is not None:
            x = self._expand_norm(self._expand(x), training=training)
        x = self._depthwise_norm(self._depthwise(x), training=training)
        if self._se is not None:
            x = self._se(x)
        x = self._project_norm(self._project(x), training=training)
        if self._has_shortcut:
            x = self._drop_connect(x, training=training) + inputs
        return x
