"""ops.sampling: counts, fractions, disjointness, uniformity and static shapes."""

import numpy as np
import pytest
import tensorflow as tf

from detection.ops import sampling


def _candidates(rng, shape, p):
    return tf.constant(rng.uniform(size=shape) < p)


def test_sample_uniform_counts_per_row_and_only_candidates():
    rng = np.random.default_rng(0)
    candidates = _candidates(rng, [3, 4, 50], 0.3)
    num = tf.constant([[0, 1, 5, 100]] * 3)
    picked = sampling.sample_uniform(candidates, 20, num, seed=1).numpy()
    assert picked.shape == (3, 4, 50)
    assert not np.any(picked & ~candidates.numpy())
    available = candidates.numpy().sum(-1)
    expected = np.minimum(np.minimum(num.numpy(), 20), available)
    np.testing.assert_array_equal(picked.sum(-1), expected)


@pytest.mark.parametrize("num_positive, num_negative", [(100, 400), (10, 400), (100, 50), (0, 3)])
def test_sample_balanced_counts(num_positive, num_negative):
    total = 1000
    labels = np.zeros([2, total], np.int32)
    labels[:, :num_positive] = 1
    labels[:, num_positive : num_positive + num_negative] = -1
    labels = np.stack([np.random.default_rng(s).permutation(row) for s, row in enumerate(labels)])
    pos, neg = sampling.sample_balanced(labels == 1, labels == -1, 256, 0.25, seed=3)
    pos, neg = pos.numpy(), neg.numpy()
    assert not np.any(pos & neg)
    assert np.all(labels[pos] == 1) and np.all(labels[neg] == -1)
    want_pos = min(num_positive, 64)
    np.testing.assert_array_equal(pos.sum(-1), [want_pos] * 2)
    np.testing.assert_array_equal(neg.sum(-1), [min(num_negative, 256 - want_pos)] * 2)


def test_sampling_is_uniform():
    candidates = tf.constant(np.arange(40) % 2 == 0)  # 20 candidates, pick 5
    hits = np.zeros(40)
    for _ in range(400):
        hits += sampling.sample_uniform(candidates, 5).numpy()
    assert hits[1::2].sum() == 0
    # Each candidate is picked with probability 1/4: 100 times in expectation, std ~8.7.
    assert np.all(np.abs(hits[0::2] - 100) < 45), hits[0::2]


def test_static_shapes_under_xla():
    @tf.function(jit_compile=True)
    def run(positives, negatives):
        return sampling.sample_balanced(positives, negatives, 16, 0.5)

    positives = tf.constant(np.arange(64).reshape(2, 32) % 3 == 0)
    pos, neg = run(positives, tf.logical_not(positives))
    assert pos.shape == (2, 32) and neg.shape == (2, 32)
    np.testing.assert_array_equal(tf.reduce_sum(tf.cast(pos, tf.int32), -1), [8, 8])
    np.testing.assert_array_equal(tf.reduce_sum(tf.cast(neg, tf.int32), -1), [8, 8])


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_samples"):
        sampling.sample_balanced(tf.zeros([4], tf.bool), tf.zeros([4], tf.bool), 0, 0.5)
    with pytest.raises(ValueError, match="fraction"):
        sampling.sample_balanced(tf.zeros([4], tf.bool), tf.zeros([4], tf.bool), 4, 1.5)
