"""Stochastic depth ("drop connect") for residual branches.

Huang et al. "Deep Networks with Stochastic Depth", ECCV 2016. In training a
residual branch is dropped for a whole example with probability `drop_rate`
(the block becomes its shortcut); kept branches are scaled by
`1 / (1 - drop_rate)` so inference needs no rescaling.
"""

import keras
import tensorflow as tf


def get_drop_connect_rate(init_rate, block_num, total_blocks):
    """Drop rate of a group of blocks, growing linearly with depth.

    As the original framework: group `block_num` of `total_blocks` gets
    `init_rate * block_num / total_blocks`, so deeper groups are dropped more
    often (ResNet uses block_num 2..5 of 5 for C2..C5).

    Args:
      init_rate: the rate of the deepest group, or None to disable.
      block_num: 1-based index of the group.
      total_blocks: number of groups (the deepest group's index).

    Returns:
      A float rate, or None when `init_rate` is None.
    """
    if init_rate is None:
        return None
    if not 0.0 <= init_rate < 1.0:
        raise ValueError(f"init_drop_connect_rate: must be in [0, 1), got {init_rate}")
    return init_rate * float(block_num) / total_blocks


class StochasticDepth(keras.layers.Layer):
    """Drops the whole input per example with probability `drop_rate`.

    Input and output: `[batch, ...]`. The identity when not training or when
    `drop_rate` is None or 0.
    """

    def __init__(self, drop_rate=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if drop_rate is not None and not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_connect_rate: must be in [0, 1), got {drop_rate}")
        self._drop_rate = drop_rate
        self._seed = seed
        self._seed_generator = keras.random.SeedGenerator(seed) if drop_rate else None

    @property
    def drop_rate(self):
        return self._drop_rate

    def call(self, inputs, training=None):
        if not training or not self._drop_rate:
            return inputs
        keep_prob = 1.0 - self._drop_rate
        noise_shape = (keras.ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        noise = keras.random.uniform(noise_shape, dtype="float32", seed=self._seed_generator)
        # floor(keep_prob + U[0, 1)) is 1 with probability keep_prob.
        binary = tf.floor(keep_prob + noise)
        return inputs / keep_prob * tf.cast(binary, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"drop_rate": self._drop_rate, "seed": self._seed})
        return config
