"""DropBlock: structured dropout of contiguous square regions.

Ghiasi, Lin, Le. "DropBlock: A regularization method for convolutional
networks", NeurIPS 2018 (arXiv:1810.12890). Dropping single activations barely
regularizes a convolutional net, because neighbours carry the same
information; dropping `block_size x block_size` squares does.
"""

import keras
import tensorflow as tf


class DropBlock(keras.layers.Layer):
    """Zeroes random `block_size x block_size` squares in training.

    The identity when not training or when `keep_prob` is None. Each channel
    of each image gets its own independent mask. The surviving activations are
    rescaled by `size / num_kept` so the expected sum is unchanged.

    Input and output: `[batch, height, width, channels]` with static height
    and width.
    """

    def __init__(self, keep_prob=None, block_size=None, seed=None, **kwargs):
        """Initializes the layer.

        Args:
          keep_prob: fraction of activations kept, in (0, 1]; None disables
            DropBlock.
          block_size: side of the dropped squares (clipped to the feature map
            size); required when `keep_prob` is set.
          seed: optional seed of the random masks.
          **kwargs: `keras.layers.Layer` arguments.

        Raises:
          ValueError: if `keep_prob` or `block_size` is invalid.
        """
        super().__init__(**kwargs)
        if keep_prob is not None:
            if not 0.0 < keep_prob <= 1.0:
                raise ValueError(f"dropblock_keep_prob: must be in (0, 1], got {keep_prob}")
            if block_size is None or int(block_size) != block_size or (block_size < 1):
                raise ValueError(
                    "dropblock_size: must be a positive integer when "
                    f"dropblock_keep_prob is set, got {block_size!r}"
                )
            block_size = int(block_size)
        self._keep_prob = keep_prob
        self._block_size = block_size
        self._seed = seed
        self._seed_generator = keras.random.SeedGenerator(seed) if keep_prob is not None else None

    @property
    def enabled(self):
        return self._keep_prob is not None

    def call(self, inputs, training=None):
        if not training or self._keep_prob is None or self._keep_prob == 1.0:
            return inputs
        _, height, width, _ = inputs.shape
        if height is None or width is None:
            raise ValueError(
                f"DropBlock {self.name}: needs static height and width, got "
                f"input shape {inputs.shape}"
            )
        block = min(self._block_size, height, width)
        # Probability of a block *centre*: chosen so that, ignoring overlaps,
        # the dropped fraction is 1 - keep_prob. Centres are only drawn where
        # the whole block fits inside the map.
        num_centres = (height - block + 1) * (width - block + 1)
        seed_drop_rate = (1.0 - self._keep_prob) * height * width / (block * block) / num_centres

        rows = tf.range(height)[:, None]
        cols = tf.range(width)[None, :]
        lo = block // 2
        valid = (
            (rows >= lo)
            & (rows < height - (block - 1) // 2)
            & (cols >= lo)
            & (cols < width - (block - 1) // 2)
        )
        valid = tf.cast(tf.reshape(valid, [1, height, width, 1]), tf.float32)

        noise = keras.random.uniform(
            keras.ops.shape(inputs), dtype="float32", seed=self._seed_generator
        )
        centres = tf.cast(noise < seed_drop_rate, tf.float32) * valid
        # A max-pool spreads every centre to its block_size x block_size square.
        dropped = tf.nn.max_pool2d(centres, ksize=block, strides=1, padding="SAME")
        keep_mask = 1.0 - dropped

        total = tf.cast(tf.size(keep_mask), tf.float32)
        kept = tf.maximum(tf.reduce_sum(keep_mask), 1.0)
        scale = total / kept
        return inputs * tf.cast(keep_mask * scale, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {"keep_prob": self._keep_prob, "block_size": self._block_size, "seed": self._seed}
        )
        return config
