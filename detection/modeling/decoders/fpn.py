"""Feature Pyramid Network, with the extra coarse levels RetinaNet uses.

Lin, Dollar, Girshick, He, Hariharan, Belongie. "Feature Pyramid Networks for
Object Detection", CVPR 2017; P6/P7 as in Lin et al. "Focal Loss for Dense
Object Detection", ICCV 2017. Follows the original TPU framework:

- 1x1 lateral convolutions on backbone levels `min_level..top` where
  `top = min(max backbone level, max_level)`;
- top-down path: 2x nearest upsampling added to the finer lateral;
- a 3x3 output convolution per level;
- levels above `top` by stride-2 3x3 convolutions: the first one on the
  output of `top` (P5 in ResNet), later ones on a ReLU of the previous level;
- optionally one batch norm (no activation) per output level, applied last.

Convolutions have biases and Glorot-uniform kernels (the TF1 defaults the
original used).
"""

import keras

from detection.modeling.layers import norm_activation as norm_lib
from detection.modeling.layers.conv import conv2d


def _upsample_nearest_2x(x, size):
    """`[b, h, w, c]` -> `[b, size[0], size[1], c]`: each pixel repeated 2x2, then cropped.

    A level is `ceil(h / 2)` of the finer one, so the finer level may be one row or column
    short of `2h` (odd sizes, or two 1x1 top levels): the crop keeps the sizes matched.
    """
    x = keras.ops.repeat(x, 2, axis=1)
    x = keras.ops.repeat(x, 2, axis=2)
    return x[:, : size[0], : size[1]]


class Fpn(keras.layers.Layer):
    """Multilevel features -> FPN features with `fpn_feat_dims` channels.

    Call: `features {'2': [b, h_2, w_2, c_2], ..., '5': [...]}` (string level
    keys, contiguous levels, level l at stride 2^l) ->
    `{'3': [b, h_3, w_3, fpn_feat_dims], ..., str(max_level): [...]}`.
    Level l > top has size `ceil(h_{l-1} / 2)`.
    """

    def __init__(
        self,
        min_level=3,
        max_level=7,
        fpn_feat_dims=256,
        use_separable_conv=False,
        use_batch_norm=True,
        norm_activation=None,
        **kwargs,
    ):
        """Initializes the FPN.

        Args:
          min_level: finest output level.
          max_level: coarsest output level.
          fpn_feat_dims: channels of every output level.
          use_separable_conv: use depthwise-separable convolutions
            (depth multiplier 1) instead of plain ones.
          use_batch_norm: add a batch norm (no activation) to every output.
          norm_activation: a `NormActivationConfig` for those batch norms.
          **kwargs: `keras.layers.Layer` arguments.

        Raises:
          ValueError: if the levels or dimensions are invalid.
        """
        kwargs.setdefault("name", "fpn")
        super().__init__(**kwargs)
        if not 1 <= min_level <= max_level:
            raise ValueError(
                f"fpn: need 1 <= min_level <= max_level, got min_level="
                f"{min_level}, max_level={max_level}"
            )
        if fpn_feat_dims < 1:
            raise ValueError(f"fpn_feat_dims: must be positive, got {fpn_feat_dims}")
        self._min_level = min_level
        self._max_level = max_level
        self._fpn_feat_dims = fpn_feat_dims
        self._use_separable_conv = use_separable_conv
        self._use_batch_norm = use_batch_norm
        self._norm_activation = norm_activation or norm_lib.NormActivationConfig()
        self._relu = keras.layers.ReLU(dtype=self.dtype_policy, name="extra_relu")
        self._top_level = None

    def _conv(self, kernel_size, strides, name):
        return conv2d(
            self._fpn_feat_dims,
            kernel_size,
            separable=self._use_separable_conv,
            strides=strides,
            dtype=self.dtype_policy,
            name=name,
        )

    def _backbone_levels(self, inputs):
        if not isinstance(inputs, dict) or not inputs:
            raise ValueError(
                f"fpn: expects a dict of backbone features keyed by level, got {inputs!r}"
            )
        try:
            levels = sorted(int(k) for k in inputs)
        except ValueError as e:
            raise ValueError(
                f"fpn: feature keys must be level strings, got {sorted(inputs)}"
            ) from e
        if levels != list(range(levels[0], levels[-1] + 1)):
            raise ValueError(f"fpn: backbone levels must be contiguous, got {levels}")
        if levels[0] > self._min_level:
            raise ValueError(
                f"fpn: min_level {self._min_level} is below the finest backbone level {levels[0]}"
            )
        return levels

    def output_channels_for(self, input_channels):
        """Checks backbone outputs `{str(level): channels}`; returns the outputs' channels.

        Raises:
          ValueError: if the backbone levels cannot feed this FPN (the message says why).
        """
        self._backbone_levels(input_channels)
        return {
            str(level): self._fpn_feat_dims for level in range(self._min_level, self._max_level + 1)
        }

    def build(self, input_shape):
        levels = self._backbone_levels(input_shape)
        self._top_level = min(levels[-1], self._max_level)
        top = self._top_level
        self._lateral = {
            level: self._conv(1, 1, f"l{level}") for level in range(self._min_level, top + 1)
        }
        self._post_hoc = {
            level: self._conv(3, 1, f"post_hoc_d{level}")
            for level in range(self._min_level, top + 1)
        }
        self._extra = {
            level: self._conv(3, 2, f"p{level}") for level in range(top + 1, self._max_level + 1)
        }
        self._norms = {}
        if self._use_batch_norm:
            self._norms = {
                level: self._norm_activation.build(
                    apply_activation=False, name=f"p{level}-bn", dtype=self.dtype_policy
                )
                for level in range(self._min_level, self._max_level + 1)
            }

    def call(self, features, training=None):
        top = self._top_level
        laterals = {
            level: self._lateral[level](features[str(level)])
            for level in range(self._min_level, top + 1)
        }
        merged = {top: laterals[top]}
        for level in range(top - 1, self._min_level - 1, -1):
            lateral = laterals[level]
            merged[level] = _upsample_nearest_2x(merged[level + 1], lateral.shape[1:3]) + lateral
        outputs = {
            level: self._post_hoc[level](merged[level]) for level in range(self._min_level, top + 1)
        }
        for level in range(top + 1, self._max_level + 1):
            x = outputs[level - 1]
            if level > top + 1:
                x = self._relu(x)
            outputs[level] = self._extra[level](x)
        if self._use_batch_norm:
            outputs = {
                level: self._norms[level](x, training=training) for level, x in outputs.items()
            }
        return {str(level): outputs[level] for level in range(self._min_level, self._max_level + 1)}
