"""NAS-FPN: the searched feature pyramid, a merging cell repeated `num_repeats` times.

Ghiasi, Lin, Pang, Le. "NAS-FPN: Learning Scalable Feature Pyramid Architecture for
Object Detection", CVPR 2019 (arXiv:1904.07392). Behaviour of the original TPU framework:

- inputs: backbone levels `min_level..` mapped to `fpn_feat_dims` channels by a 1x1 conv +
  batch norm (only when the width differs); missing coarser levels come from max-pooling
  the previous level;
- `num_repeats` merging cells (`nasfpn_cell`) over levels 3-7; after each merge the
  activation and the node's block: `block_fn='conv'` is a 3x3 conv (with bias) + batch
  norm; `'bottleneck'` is a ResNet bottleneck block of `fpn_feat_dims` filters (so
  `4 * fpn_feat_dims` output channels) with stochastic depth `init_drop_connect_rate`;
- the last five nodes of a cell (levels 3, 4, 5, 7, 6) are the next cell's inputs and, after
  the last cell, the outputs.

Convolutions keep the TF1 defaults of the original: biases, Glorot-uniform kernels.
"""

import dataclasses

import keras

from detection.modeling.decoders import nasfpn_cell
from detection.modeling.layers import conv as conv_lib
from detection.modeling.layers import dropblock as dropblock_lib
from detection.modeling.layers import norm_activation as norm_lib
from detection.modeling.layers.resnet_blocks import BottleneckBlock

SUPPORTED_LEVELS = (3, 7)
BLOCK_FNS = ("conv", "bottleneck")


class NasFpn(keras.layers.Layer):
    """Backbone features -> NAS-FPN features at levels `min_level..max_level`.

    Call: `features {'2': [b, h_2, w_2, c_2], ..., '5': [...]}` (string level keys, level l
    at stride 2^l; levels below `min_level` are ignored) -> `{'3': [b, h_3, w_3, C], ...,
    '7': [b, h_7, w_7, C]}` with `C = fpn_feat_dims` (`4 * fpn_feat_dims` for
    `block_fn='bottleneck'`, see `output_channels`).
    """

    def __init__(
        self,
        min_level=3,
        max_level=7,
        fpn_feat_dims=256,
        num_repeats=5,
        use_separable_conv=False,
        block_fn="conv",
        activation=None,
        norm_activation=None,
        init_drop_connect_rate=None,
        use_sum_for_combination=False,
        dropblock_keep_prob=None,
        dropblock_size=None,
        **kwargs,
    ):
        """Initializes the decoder.

        Args:
          min_level: finest output level (the searched cell needs 3).
          max_level: coarsest output level (the searched cell needs 7).
          fpn_feat_dims: channels of the merged features.
          num_repeats: number of stacked cells.
          use_separable_conv: depthwise-separable (depth multiplier 1) instead of plain convs.
          block_fn: 'conv' or 'bottleneck', the block after each merge.
          activation: 'relu' or 'swish' for the merges and the blocks' batch norms; None
            uses `norm_activation`'s.
          norm_activation: a `NormActivationConfig`.
          init_drop_connect_rate: stochastic depth rate of every bottleneck block (unused by
            'conv'); None disables it.
          use_sum_for_combination: merge every node by a sum (no global attention).
          dropblock_keep_prob: DropBlock keep probability after the blocks' batch norms.
          dropblock_size: DropBlock square side.
          **kwargs: `keras.layers.Layer` arguments.

        Raises:
          ValueError: on unsupported levels or invalid values (the message names the key).
        """
        kwargs.setdefault("name", "nasfpn")
        super().__init__(**kwargs)
        if (min_level, max_level) != SUPPORTED_LEVELS:
            raise ValueError(
                f"nasfpn.min_level/max_level: the searched cell is defined for levels 3-7, "
                f"got {min_level}-{max_level}"
            )
        if int(fpn_feat_dims) != fpn_feat_dims or fpn_feat_dims < 1:
            raise ValueError(
                f"nasfpn.fpn_feat_dims: must be a positive integer, got {fpn_feat_dims!r}"
            )
        if int(num_repeats) != num_repeats or num_repeats < 1:
            raise ValueError(f"nasfpn.num_repeats: must be a positive integer, got {num_repeats!r}")
        if block_fn not in BLOCK_FNS:
            raise ValueError(
                f"nasfpn.block_fn: unsupported value {block_fn!r}; expected one of {BLOCK_FNS}"
            )
        if init_drop_connect_rate is not None and not 0.0 <= init_drop_connect_rate < 1.0:
            raise ValueError(
                f"nasfpn.init_drop_connect_rate: must be in [0, 1), got {init_drop_connect_rate}"
            )
        norm_activation = norm_activation or norm_lib.NormActivationConfig()
        if activation is not None:
            try:
                norm_activation = dataclasses.replace(norm_activation, activation=activation)
            except ValueError as error:
                raise ValueError(f"nasfpn.{error}") from None
        self._min_level = min_level
        self._max_level = max_level
        self._fpn_feat_dims = int(fpn_feat_dims)
        self._num_repeats = int(num_repeats)
        self._use_separable_conv = use_separable_conv
        self._block_fn = block_fn
        self._norm_activation = norm_activation
        self._activation_fn = norm_activation.activation_fn
        self._init_drop_connect_rate = init_drop_connect_rate
        self._use_sum_for_combination = use_sum_for_combination
        self._dropblock_keep_prob = dropblock_keep_prob
        self._dropblock_size = dropblock_size
        self._dropblock = dropblock_lib.DropBlock(
            dropblock_keep_prob, dropblock_size, dtype=self.dtype_policy, name="dropblock"
        )
        self._levels = list(range(min_level, max_level + 1))
        self._cell_levels, self._wiring = nasfpn_cell.plan_cell(
            nasfpn_cell.NASFPN_BLOCK_SPECS, self._levels
        )
        num_nodes = len(nasfpn_cell.NASFPN_BLOCK_SPECS)
        output_levels = sorted(self._cell_levels[-len(self._levels) :])
        if output_levels != self._levels or len(self._cell_levels) != len(self._levels) + num_nodes:
            raise ValueError(f"nasfpn: the cell outputs levels {output_levels}, not {self._levels}")

    @property
    def output_channels(self):
        """`{str(level): channels}` of the outputs."""
        channels = self._node_channels()
        return {str(level): channels for level in self._levels}

    def _node_channels(self):
        expansion = BottleneckBlock.expansion if self._block_fn == "bottleneck" else 1
        return self._fpn_feat_dims * expansion

    def _conv(self, filters, kernel_size, name):
        if self._use_separable_conv:
            return keras.layers.SeparableConv2D(
                filters,
                kernel_size,
                padding="same",
                depth_multiplier=1,
                dtype=self.dtype_policy,
                name=name,
            )
        return conv_lib.Conv2D(
            filters, kernel_size, padding="same", dtype=self.dtype_policy, name=name
        )

    def _resample(self, level, channels, target_level, name):
        return nasfpn_cell.Resample(
            level,
            channels,
            target_level,
            self._fpn_feat_dims,
            self._conv,
            self._norm_activation,
            dtype=self.dtype_policy,
            name=name,
        )

    def _block(self, in_channels, name):
        if self._block_fn == "conv":
            return [
                self._conv(self._fpn_feat_dims, 3, f"{name}_conv"),
                self._norm_activation.build(
                    apply_activation=False, name=f"{name}_bn", dtype=self.dtype_policy
                ),
            ]
        return [
            BottleneckBlock(
                self._fpn_feat_dims,
                strides=1,
                use_projection=in_channels != self._node_channels(),
                norm_activation=self._norm_activation,
                dropblock_keep_prob=self._dropblock_keep_prob,
                dropblock_size=self._dropblock_size,
                drop_connect_rate=self._init_drop_connect_rate,
                dtype=self.dtype_policy,
                name=f"{name}_bottleneck",
            )
        ]

    def _input_levels(self, inputs):
        """`{level: value}` of the backbone outputs this decoder reads, checked."""
        if not isinstance(inputs, dict) or not inputs:
            raise ValueError(f"nasfpn: expects a dict of features keyed by level, got {inputs!r}")
        try:
            available = {int(key): value for key, value in inputs.items()}
        except ValueError as e:
            raise ValueError(
                f"nasfpn: feature keys must be level strings, got {sorted(inputs)}"
            ) from e
        if self._min_level not in available:
            raise ValueError(
                f"nasfpn: needs backbone level {self._min_level}, got levels {sorted(available)}"
            )
        # A level the backbone lacks is max-pooled from the one below it.
        return {level: available[level] for level in self._levels if level in available}

    def output_channels_for(self, input_channels):
        """Checks backbone outputs `{str(level): channels}`; returns the outputs' channels.

        Raises:
          ValueError: if the backbone levels cannot feed NAS-FPN (the message says why).
        """
        self._input_levels(input_channels)
        return self.output_channels

    def build(self, input_shape):
        available = self._input_levels(input_shape)
        self._inputs = {}
        for level in self._levels:
            if level in available:
                channels = int(available[level][-1])
                self._inputs[level] = self._resample(level, channels, level, f"l{level}")
            else:
                self._inputs[level] = self._resample(
                    level - 1, self._fpn_feat_dims, level, f"p{level}"
                )
        num_inputs = len(self._levels)
        node_channels = self._node_channels()
        self._cells = []
        for r in range(self._num_repeats):
            channels = [self._fpn_feat_dims if r == 0 else node_channels] * num_inputs
            channels += [node_channels] * len(nasfpn_cell.NASFPN_BLOCK_SPECS)
            nodes = []
            for i, (spec, (parents, extras)) in enumerate(
                zip(nasfpn_cell.NASFPN_BLOCK_SPECS, self._wiring)
            ):
                prefix = f"cell{r}_node{i}"
                resamples = [
                    self._resample(self._cell_levels[j], channels[j], spec.level, f"{prefix}_in{k}")
                    for k, j in enumerate(parents + extras)
                ]
                nodes.append(
                    nasfpn_cell.MergeNode(
                        spec,
                        [self._cell_levels[j] for j in parents],
                        resamples,
                        self._block(self._fpn_feat_dims, prefix),
                        self._activation_fn,
                        self._use_sum_for_combination,
                        self._dropblock,
                        dtype=self.dtype_policy,
                        name=prefix,
                    )
                )
            self._cells.append(nodes)

    def call(self, features, training=None):
        feats = []
        for level in self._levels:
            source = features[str(level)] if str(level) in features else feats[-1]
            feats.append(self._inputs[level](source, size=None, training=training))
        # Every node works at the size of its level's input.
        sizes = {level: tuple(x.shape[1:3]) for level, x in zip(self._levels, feats)}
        num_inputs = len(self._levels)
        out_levels = self._cell_levels[-num_inputs:]
        for nodes in self._cells:
            for (parents, extras), node in zip(self._wiring, nodes):
                inputs = [feats[j] for j in parents + extras]
                feats.append(node(inputs, size=sizes[node.level], training=training))
            by_level = dict(zip(out_levels, feats[-num_inputs:]))
            feats = [by_level[level] for level in self._levels]
        return {str(level): x for level, x in zip(self._levels, feats)}
