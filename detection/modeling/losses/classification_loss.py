"""Softmax cross-entropy of image classification, with label smoothing and example weights."""

import tensorflow as tf


def softmax_cross_entropy(logits, labels, label_smoothing=0.0, weights=None):
    """Weighted mean of the per-example softmax cross-entropy.

    As `tf.compat.v1.losses.softmax_cross_entropy` (the original's loss): the one-hot target
    becomes `onehot * (1 - label_smoothing) + label_smoothing / num_classes`.

    Args:
      logits: [b, num_classes] float32.
      labels: [b] integer classes.
      label_smoothing: in [0, 1).
      weights: optional [b] float (0 removes an example, e.g. eval padding); None weighs all 1.

    Returns:
      float32 scalar: sum(weights * loss) / sum(weights), 0 when every weight is 0.
    """
    num_classes = logits.shape[-1]
    targets = tf.one_hot(tf.cast(labels, tf.int32), num_classes, dtype=tf.float32)
    if label_smoothing:
        targets = targets * (1.0 - label_smoothing) + label_smoothing / num_classes
    losses = tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    if weights is None:
        return tf.reduce_mean(losses)
    weights = tf.cast(weights, tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(losses * weights), tf.reduce_sum(weights))
