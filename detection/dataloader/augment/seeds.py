"""Stateless random draws from explicit seeds.

Every random decision of the augmentation ops comes from a `seed`: an int32/int64 tensor of
shape [2] (the form `tf.random.stateless_*` take). The same seed gives the same draw, so a test
can pin every draw; distinct draws derive distinct seeds with `child`.
"""

import tensorflow as tf

_INT32_MAX = 2**31 - 1


def per_call_seed(op_seed=None):
    """A fresh [2] int32 seed for one call, from the stateful RNG (for use inside tf.data).

    Args:
      op_seed: optional Python int; with it the sequence of seeds is reproducible per
        pipeline (as `tf.random.uniform(seed=...)`).
    """
    return tf.random.uniform([2], 0, _INT32_MAX, dtype=tf.int32, seed=op_seed)


def child(seed, index):
    """The seed of sub-draw `index` (a Python int) of `seed`."""
    return tf.random.experimental.stateless_fold_in(seed, index)


def uniform(seed, shape=(), minval=0.0, maxval=1.0):
    """Uniform float32 draw(s) in [minval, maxval)."""
    return tf.random.stateless_uniform(shape, seed, minval=minval, maxval=maxval)


def uniform_int(seed, minval, maxval):
    """One int32 draw in [minval, maxval) (tensors allowed; needs maxval > minval)."""
    return tf.random.stateless_uniform(
        [], seed, minval=tf.cast(minval, tf.int32), maxval=tf.cast(maxval, tf.int32), dtype=tf.int32
    )


def bernoulli(seed, probability, shape=()):
    """Boolean draw(s), True with `probability`."""
    return uniform(seed, shape) < probability


def random_sign(seed):
    """+1.0 or -1.0 with equal probability: the policies apply each geometric op both ways."""
    return tf.where(bernoulli(seed, 0.5), 1.0, -1.0)
