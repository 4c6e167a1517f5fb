"""The NAS-FPN merging cell: its searched specification, wiring and node layers.

Ghiasi, Lin, Pang, Le. "NAS-FPN: Learning Scalable Feature Pyramid Architecture for
Object Detection", CVPR 2019 (arXiv:1904.07392); `decoders/nasfpn.py` stacks the cells.
A cell appends seven nodes to its five inputs (levels 3-7). Each node resamples two earlier
features to its level (`Resample`: 1x1 conv + batch norm if the width differs, max pool
down, nearest upsampling up) and merges them (`MergeNode`) by a sum or by global attention:
the coarser input plus the finer one gated by `sigmoid(max over space)` of the coarser one.
Output nodes also add the same-level features nobody consumed (`plan_cell`), then apply the
activation and the node's block.
"""

import dataclasses

import keras
import tensorflow as tf

from detection.modeling.layers import nearest_resize


@dataclasses.dataclass(frozen=True)
class MergeSpec:
    """One node of the cell: `(level, combine_fn, (input_offset0, input_offset1), is_output)`."""

    level: int
    combine_fn: str
    input_offsets: tuple
    is_output: bool


# The searched cell for levels 3-7 (paper Fig. 7); offsets index the cell's feature list,
# whose first five entries are its inputs at levels 3..7.
NASFPN_BLOCK_SPECS = tuple(
    MergeSpec(level, fn, offsets, out)
    for level, fn, offsets, out in (
        (4, "attention", (1, 3), False),
        (4, "sum", (1, 5), False),
        (3, "sum", (0, 6), True),
        (4, "sum", (6, 7), True),
        (5, "attention", (7, 8), True),
        (7, "attention", (6, 9), True),
        (6, "attention", (9, 10), True),
    )
)


def plan_cell(specs, input_levels):
    """Which features each node merges.

    Args:
      specs: the `MergeSpec`s of a cell.
      input_levels: levels of the cell's inputs, in order.

    Returns:
      `(levels, wiring)`: the level of every feature of the cell (inputs then nodes) and,
      per node, `(parents, extras)` where `extras` are the unconsumed same-level features an
      output node adds.

    Raises:
      ValueError: on an input offset pointing at a feature that does not exist yet.
    """
    levels = list(input_levels)
    consumers = [0] * len(levels)
    wiring = []
    for i, spec in enumerate(specs):
        for offset in spec.input_offsets:
            if not 0 <= offset < len(levels):
                raise ValueError(
                    f"nasfpn: node {i} input offset {offset} is not one of the "
                    f"{len(levels)} features built so far"
                )
            consumers[offset] += 1
        extras = []
        if spec.is_output:
            for j, level in enumerate(levels):
                if consumers[j] == 0 and level == spec.level:
                    extras.append(j)
                    consumers[j] += 1
        wiring.append((tuple(spec.input_offsets), tuple(extras)))
        levels.append(spec.level)
        consumers.append(0)
    return levels, wiring


class Resample(keras.layers.Layer):
    """Width (1x1 conv + batch norm when it differs) then level (max pool / repeat).

    Call: `([b, h, w, c_in], size=(h_t, w_t))` -> `[b, h_t, w_t, target_channels]`. Going
    down, a SAME max pool gives `ceil(h / 2^k)`, the target level's size; going up,
    repeating gives `h * 2^k`, which overshoots a level of ceil-divided size (two 1x1 top
    levels of a small image) and is cropped to `size`.
    """

    def __init__(self, level, channels, target_level, target_channels, make_conv, norm, **kwargs):
        super().__init__(**kwargs)
        self._shift = target_level - level
        self._conv = None
        if channels != target_channels:
            self._conv = make_conv(target_channels, 1, "conv")
            self._norm = norm.build(apply_activation=False, name="bn", dtype=self.dtype_policy)

    def build(self, input_shape):
        # Sublayers build on their first call; without this override Keras would first run
        # the whole subtree symbolically to build it.
        pass

    def call(self, inputs, size, training=None):
        x = inputs
        if self._conv is not None:
            x = self._norm(self._conv(x), training=training)
        if self._shift > 0:
            stride = 2**self._shift
            x = tf.nn.max_pool2d(x, ksize=stride, strides=stride, padding="SAME")
        elif self._shift < 0:
            scale = 2**-self._shift
            x = nearest_resize.upsample_repeat(x, scale, scale)[:, : size[0], : size[1]]
        return x


class MergeNode(keras.layers.Layer):
    """One node: resample its inputs, merge, add the extras, activation, block.

    Call: `([parent0, parent1, *extras], size=(h_level, w_level))` (features at their own
    levels) -> `[b, h_level, w_level, C]`.
    """

    def __init__(
        self,
        spec,
        input_levels,
        resamples,
        block,
        activation_fn,
        use_sum_for_combination,
        dropblock,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._combine_fn = "sum" if use_sum_for_combination else spec.combine_fn
        if self._combine_fn not in ("sum", "attention"):
            raise ValueError(f"nasfpn: unknown combine_fn {spec.combine_fn!r}")
        self._level = spec.level
        self._input_levels = tuple(input_levels)
        self._resamples = list(resamples)
        self._block = list(block)
        self._activation_fn = activation_fn
        self._dropblock = dropblock

    def build(self, input_shape):
        # Sublayers build on their first call; without this override Keras would first run
        # the whole subtree symbolically to build it, at every level of nesting.
        pass

    @property
    def level(self):
        """The pyramid level this node outputs."""
        return self._level

    def call(self, inputs, size, training=None):
        x0, x1, *extras = [
            resample(x, size=size, training=training)
            for resample, x in zip(self._resamples, inputs)
        ]
        if self._combine_fn == "sum":
            x = x0 + x1
        else:
            # The coarser input attends over the finer one: a per-channel gate from the
            # spatial maximum of the coarser feature.
            if self._input_levels[0] >= self._input_levels[1]:
                coarse, fine = x0, x1
            else:
                coarse, fine = x1, x0
            # The spatial maximum as a whole-map max pool, not `reduce_max`: reduce_max's
            # gradient divides by the count of elements equal to the maximum, and XLA may
            # recompute the two sides of that comparison differently (a 1x1 top level at
            # XLA's CPU optimization level 0 gave 0 / 0 = NaN); the pool's gradient goes to
            # one argmax and cannot divide. Same value; ties are measure zero.
            height, width = coarse.shape[1], coarse.shape[2]
            spatial_max = tf.nn.max_pool2d(
                coarse, ksize=(height, width), strides=(height, width), padding="VALID"
            )
            x = coarse + fine * tf.sigmoid(spatial_max)
        for extra in extras:
            x = x + extra
        x = self._activation_fn(x)
        if len(self._block) == 2:
            conv, norm = self._block
            return self._dropblock(norm(conv(x), training=training), training=training)
        return self._block[0](x, training=training)
