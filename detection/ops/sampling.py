"""Balanced positive/negative sampling with static shapes (RPN anchors, Fast R-CNN ROIs).

A uniform random subset of k candidates is the k candidates with the largest random keys, so
sampling is a `top_k` over the last axis: static shapes, no boolean masks, no host round trip.
"""

import tensorflow as tf


def sample_uniform(candidates, max_samples, num_samples=None, seed=None):
    """Picks `min(num_samples, #candidates)` candidates uniformly at random, per row.

    Args:
      candidates: [..., M] bool.
      max_samples: Python int, an upper bound of `num_samples` (the static top-k size).
      num_samples: optional int32 [...] or scalar, how many to pick per row (<= max_samples);
        None means `max_samples`.
      seed: optional op seed.

    Returns:
      [..., M] bool of the picked candidates.
    """
    candidates = tf.convert_to_tensor(candidates, tf.bool)
    num_candidates = candidates.shape[-1]
    k = min(int(max_samples), num_candidates)
    if k == 0:
        return tf.zeros_like(candidates)
    keys = tf.random.uniform(tf.shape(candidates), seed=seed)
    keys = tf.where(candidates, keys, -1.0)
    top_keys, top = tf.math.top_k(keys, k=k)  # [..., k]
    take = top_keys >= 0.0
    if num_samples is not None:
        count = tf.cast(num_samples, tf.int32)[..., tf.newaxis]
        take &= tf.range(k) < count
    # Scatter the picks back: one (row, column) index per pick, rows flattened.
    flat_top = tf.reshape(top, [-1, k])
    rows = tf.shape(flat_top)[0]
    row_ids = tf.broadcast_to(tf.range(rows)[:, tf.newaxis], [rows, k])
    indices = tf.stack([row_ids, flat_top], axis=-1)
    picked = tf.scatter_nd(
        tf.reshape(indices, [-1, 2]), tf.reshape(take, [-1]), tf.stack([rows, num_candidates])
    )
    return tf.reshape(picked, tf.shape(candidates))


def sample_balanced(positives, negatives, num_samples, positive_fraction, seed=None):
    """Samples up to `num_samples` candidates per row, at most a fraction of them positive.

    As the original framework's balanced sampler: `floor(positive_fraction * num_samples)`
    positives at most (fewer if there are fewer), and negatives fill the rest of `num_samples`.

    Args:
      positives: [..., M] bool.
      negatives: [..., M] bool, disjoint from `positives`.
      num_samples: Python int, samples per row.
      positive_fraction: float in (0, 1].
      seed: optional op seed.

    Returns:
      (sampled_positives [..., M] bool, sampled_negatives [..., M] bool).
    """
    num_samples = int(num_samples)
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if not 0.0 < positive_fraction <= 1.0:
        raise ValueError(f"the positive fraction must be in (0, 1], got {positive_fraction}")
    max_positives = int(positive_fraction * num_samples)
    sampled_positives = sample_uniform(positives, max_positives, seed=seed)
    num_positives = tf.reduce_sum(tf.cast(sampled_positives, tf.int32), axis=-1)
    sampled_negatives = sample_uniform(
        negatives, num_samples, num_samples - num_positives, seed=seed
    )
    return sampled_positives, sampled_negatives
