"""The scale-permuted wiring shared by SpineNet and SpineNet-MBConv.

Du et al. "SpineNet: Learning Scale-Permuted Backbone for Recognition and Localization",
CVPR 2020 (arXiv:1912.05027). A searched list of blocks, each at its own pyramid level,
each fed by two earlier features (the stem outputs come first in the feature list):

1. both parents are resampled to the block's level and input channels, then summed;
2. an output block also adds every earlier feature nobody has consumed yet that has the
   block's level and channels (so no computation is wasted);
3. the activation, then the block group;
4. output blocks (one per level `min_level..max_level`) become the endpoints, each mapped
   to `endpoints_num_filters` channels by a 1x1 conv + batch norm + activation.

`plan_wiring` resolves this into a static graph once, at construction. The families differ
only in the stem, the resampling connections and the blocks: subclasses of
`ScalePermutedBackbone` provide those three. Rule 2 compares levels where the original
compared feature widths; the two agree for every input wider than 2^(max level - 1) pixels.
"""

import dataclasses
import math

import keras

from detection.modeling.layers import mbconv
from detection.modeling.layers import norm_activation as norm_lib
from detection.modeling.layers import stochastic_depth


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One searched block: `(level, block_fn, (input_offset0, input_offset1), is_output)`."""

    level: int
    block_fn: str
    input_offsets: tuple
    is_output: bool


def build_block_specs(specs):
    """`BlockSpec`s from the published tuples."""
    return tuple(BlockSpec(level, fn, tuple(offsets), out) for level, fn, offsets, out in specs)


@dataclasses.dataclass(frozen=True)
class Feature:
    """A feature of the scale-permuted network: its level, channels and producing block."""

    level: int
    channels: int
    block_fn: str


@dataclasses.dataclass(frozen=True)
class Node:
    """A wired block.

    Attributes:
      spec: the block's `BlockSpec`.
      output: the `Feature` it produces (appended to the feature list).
      parents: indices of the two resampled inputs in the feature list.
      shortcuts: indices of unconsumed same-level, same-channel features added before the
        block (output blocks only).
    """

    spec: BlockSpec
    output: Feature
    parents: tuple
    shortcuts: tuple


def plan_wiring(block_specs, stem_features, block_channels):
    """Resolves the block specifications into a static graph.

    Args:
      block_specs: sequence of `BlockSpec`.
      stem_features: the `Feature`s of the stem, in feature-list order.
      block_channels: function `BlockSpec -> int`, the channels a block takes and returns.

    Returns:
      A tuple of `Node`, one per spec; node `i` produces feature `len(stem_features) + i`.

    Raises:
      ValueError: if an input offset points at a feature that does not exist yet.
    """
    features = list(stem_features)
    consumers = [0] * len(features)
    nodes = []
    for i, spec in enumerate(block_specs):
        for offset in spec.input_offsets:
            if not 0 <= offset < len(features):
                raise ValueError(
                    f"block_specs[{i}]: input offset {offset} is not one of the "
                    f"{len(features)} features built so far"
                )
            consumers[offset] += 1
        output = Feature(spec.level, int(block_channels(spec)), spec.block_fn)
        shortcuts = []
        if spec.is_output:
            for j, feature in enumerate(features):
                if (
                    consumers[j] == 0
                    and feature.level == output.level
                    and feature.channels == output.channels
                ):
                    shortcuts.append(j)
                    consumers[j] += 1
        nodes.append(Node(spec, output, tuple(spec.input_offsets), tuple(shortcuts)))
        features.append(output)
        consumers.append(0)
    return tuple(nodes)


def scaling_for(section, scaling_map, model_id):
    """A copy of the `scaling_map` entry of `model_id` (case-insensitive).

    Args:
      section: the params section naming the model ('spinenet', 'spinenet_mbconv'), for
        error messages.
      scaling_map: `{model_id: {scaling key: value}}`.
      model_id: the requested id.

    Raises:
      ValueError: `model_id` is not in `scaling_map` (the message names `section.model_id`).
    """
    by_upper = {key.upper(): key for key in scaling_map}
    key = by_upper.get(str(model_id).upper())
    if key is None:
        raise ValueError(
            f"{section}.model_id: unsupported value {model_id!r}; expected one of "
            f"{list(scaling_map)}"
        )
    return dict(scaling_map[key])


def resolve_scaling(section, scaling_map, model_id, overrides):
    """The scaling of `model_id` with the given overrides, validated.

    Args:
      section: the params section naming the model, for error messages.
      scaling_map: `{model_id: {scaling key: value}}`; the keys are some of
        `endpoints_num_filters`, `filter_size_scale`, `resample_alpha`, `block_repeats`.
      model_id: the requested id (case-insensitive).
      overrides: `{scaling key: value}`; a None value keeps the model id's value.

    Returns:
      The resolved `{scaling key: value}`.

    Raises:
      ValueError: unknown model id, an override key the model does not have, a
        `filter_size_scale` or `resample_alpha` that is not > 0, or a `block_repeats` that is
        not a positive integer (the message names `section.key` and the value).
    """
    scaling = scaling_for(section, scaling_map, model_id)
    for key, value in overrides.items():
        if key not in scaling:
            raise ValueError(f"{section}: {key!r} is not one of the scaling keys {list(scaling)}")
        if value is not None:
            scaling[key] = value
    for key in ("filter_size_scale", "resample_alpha"):
        if key in scaling and not scaling[key] > 0:
            raise ValueError(f"{section}.{key}: must be > 0, got {scaling[key]!r}")
    repeats = scaling["block_repeats"]
    if int(repeats) != repeats or repeats < 1:
        raise ValueError(f"{section}.block_repeats: must be a positive integer, got {repeats!r}")
    return scaling


def level_size(image_size, level):
    """Spatial size `ceil(image_size / 2**level)` of a level."""
    return int(math.ceil(image_size / 2**level))


class BlockGroup(keras.layers.Layer):
    """Applies its blocks in order: `[b, h, w, c] -> [b, h, w, c']`."""

    def __init__(self, blocks, **kwargs):
        super().__init__(**kwargs)
        self._blocks = list(blocks)

    def build(self, input_shape):
        # Sublayers build on their first call; without this override Keras would first run
        # the whole subtree symbolically to build it, at every level of nesting.
        pass

    @property
    def blocks(self):
        return list(self._blocks)

    def call(self, inputs, training=None):
        x = inputs
        for block in self._blocks:
            x = block(x, training=training)
        return x


class ScalePermutedBackbone(keras.layers.Layer):
    """Base class: stem, then the wired blocks, then the endpoints.

    Call: `images [batch, H, W, 3]` -> `{str(level): [batch, ceil(H / 2^level),
    ceil(W / 2^level), endpoints_num_filters]}` for `level` in `min_level..max_level`.

    Subclasses implement `_stem_features`, `_call_stem`, `_block_channels`,
    `_build_resample` and `_build_block` and call `_build_network` at the end of their
    constructor.
    """

    def __init__(
        self,
        block_specs,
        min_level,
        max_level,
        endpoints_num_filters,
        norm_activation=None,
        init_drop_connect_rate=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 1 <= min_level <= max_level:
            raise ValueError(
                f"min_level/max_level: need 1 <= min_level <= max_level, got "
                f"{min_level} and {max_level}"
            )
        if int(endpoints_num_filters) != endpoints_num_filters or endpoints_num_filters < 1:
            raise ValueError(
                f"endpoints_num_filters: must be a positive integer, got {endpoints_num_filters!r}"
            )
        self._block_specs = tuple(block_specs)
        self._min_level = min_level
        self._max_level = max_level
        self._endpoints_num_filters = int(endpoints_num_filters)
        self._norm_activation = norm_activation or norm_lib.NormActivationConfig()
        self._activation_fn = self._norm_activation.activation_fn
        self._init_drop_connect_rate = init_drop_connect_rate
        # Fails early on a bad rate even when no block would use it.
        stochastic_depth.get_drop_connect_rate(init_drop_connect_rate, 1, 1)

    # Hooks for the subclasses.
    def _stem_features(self):
        """The `Feature`s the stem returns, in order."""
        raise NotImplementedError

    def _call_stem(self, images, training):
        """`images` -> list of stem tensors matching `_stem_features()`."""
        raise NotImplementedError

    def _block_channels(self, spec):
        """Channels taken and returned by the block group of `spec`."""
        raise NotImplementedError

    def _build_resample(self, source, target, name):
        """A layer `(x, size, training) -> x'` taking `source` to `target`'s level and channels."""
        raise NotImplementedError

    def _build_block(self, spec, channels, drop_connect_rate, name):
        """The block group of `spec` (a layer `(x, training) -> x`)."""
        raise NotImplementedError

    def _build_network(self):
        policy = self.dtype_policy
        self._nodes = plan_wiring(self._block_specs, self._stem_features(), self._block_channels)
        output_levels = sorted(node.spec.level for node in self._nodes if node.spec.is_output)
        if len(set(output_levels)) != len(output_levels):
            raise ValueError(f"block_specs: duplicate output levels {output_levels}")
        wanted = list(range(self._min_level, self._max_level + 1))
        if output_levels != wanted:
            raise ValueError(
                f"min_level/max_level: the block specs output levels {output_levels}, "
                f"which must be exactly min_level..max_level = {wanted}"
            )
        features = list(self._stem_features())
        self._resamples = []
        self._groups = []
        for i, node in enumerate(self._nodes):
            self._resamples.append(
                [
                    self._build_resample(features[p], node.output, f"resample_{i}_{k}")
                    for k, p in enumerate(node.parents)
                ]
            )
            rate = stochastic_depth.get_drop_connect_rate(
                self._init_drop_connect_rate, i + 1, len(self._nodes)
            )
            self._groups.append(
                self._build_block(node.spec, node.output.channels, rate, f"block_{i}")
            )
            features.append(node.output)
        self._endpoint_convs = {}
        self._endpoint_norms = {}
        for level in wanted:
            self._endpoint_convs[str(level)] = mbconv.pointwise_conv(
                self._endpoints_num_filters, f"endpoint_{level}", policy
            )
            self._endpoint_norms[str(level)] = self._norm_activation.build(
                name=f"endpoint_{level}_bn", dtype=policy
            )

    def build(self, input_shape):
        # Sublayers build on their first call; without this override Keras would first run
        # the whole subtree symbolically to build it, at every level of nesting.
        pass

    @property
    def nodes(self):
        """The wired blocks (`Node`s), in build order."""
        return self._nodes

    @property
    def output_channels(self):
        """`{str(level): endpoints_num_filters}` for the output levels."""
        return {
            str(level): self._endpoints_num_filters
            for level in range(self._min_level, self._max_level + 1)
        }

    def block_features(self, images, training=None):
        """All features of the network, stem outputs first, then one per block.

        Args:
          images: `[batch, H, W, 3]`.
          training: batch norm / stochastic depth mode.

        Returns:
          A list of tensors; entry `len(stem) + i` is block `i`'s output
          `[batch, ceil(H / 2^level_i), ceil(W / 2^level_i), channels_i]`.
        """
        height, width = images.shape[1], images.shape[2]
        if height is None or width is None:
            raise ValueError(f"{self.name}: needs a static image size, got {images.shape}")
        features = list(self._call_stem(images, training))
        for node, resamples, group in zip(self._nodes, self._resamples, self._groups):
            size = (level_size(height, node.spec.level), level_size(width, node.spec.level))
            x = None
            for parent, resample in zip(node.parents, resamples):
                y = resample(features[parent], size=size, training=training)
                x = y if x is None else x + y
            for j in node.shortcuts:
                x = x + features[j]
            features.append(group(self._activation_fn(x), training=training))
        return features

    def call(self, images, training=None):
        features = self.block_features(images, training=training)
        offset = len(features) - len(self._nodes)
        outputs = {}
        for i, node in enumerate(self._nodes):
            if node.spec.is_output:
                key = str(node.spec.level)
                x = self._endpoint_convs[key](features[offset + i])
                outputs[key] = self._endpoint_norms[key](x, training=training)
        return {key: outputs[key] for key in sorted(outputs, key=int)}
