"""FusedBatchNorm against keras.layers.BatchNormalization (the reference)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from detection.modeling.layers.batch_norm import FusedBatchNorm
from detection.modeling.layers.norm_activation import NormActivation

MOMENTUM = 0.9
EPSILON = 1e-4


def _pair(shape, gamma_initializer="ones"):
    """(ours, keras) built on `shape`, with the same random gamma and beta."""
    ours = FusedBatchNorm(momentum=MOMENTUM, epsilon=EPSILON, gamma_initializer=gamma_initializer)
    reference = keras.layers.BatchNormalization(
        momentum=MOMENTUM, epsilon=EPSILON, gamma_initializer=gamma_initializer
    )
    ours.build(shape)
    reference.build(shape)
    rng = np.random.default_rng(0)
    channels = shape[-1]
    for layer in (ours, reference):
        layer.gamma.assign(rng.uniform(0.5, 1.5, channels).astype(np.float32))
        layer.beta.assign(rng.normal(size=channels).astype(np.float32))
        rng = np.random.default_rng(0)
    return ours, reference


def _step(layer, x, training):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        # A non-uniform loss so that every gradient term matters.
        loss = tf.reduce_sum(tf.sin(tf.cast(y, tf.float32)) * tf.range(1.0, y.shape[-1] + 1.0))
    return y, tape.gradient(loss, [x, layer.gamma, layer.beta])


@pytest.mark.parametrize("shape", [(4, 6), (2, 5, 6), (2, 4, 5, 6), (2, 3, 4, 5, 6)])
def test_training_matches_keras(shape):
    ours, reference = _pair(shape)
    rng = np.random.default_rng(1)
    for _ in range(3):
        x = tf.constant(rng.normal(2.0, 3.0, size=shape).astype(np.float32))
        y_ours, g_ours = _step(ours, x, training=True)
        y_ref, g_ref = _step(reference, x, training=True)
        np.testing.assert_allclose(y_ours, y_ref, rtol=1e-4, atol=1e-4)
        for a, b in zip(g_ours, g_ref):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    # Moving statistics moved the same way (biased variance, same momentum).
    np.testing.assert_allclose(ours.moving_mean, reference.moving_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        ours.moving_variance, reference.moving_variance, rtol=1e-5, atol=1e-6
    )
    assert not np.allclose(ours.moving_mean, 0.0)


def test_moving_statistics_against_numpy():
    shape = (3, 4, 5, 2)
    layer = FusedBatchNorm(momentum=MOMENTUM, epsilon=EPSILON)
    x = np.random.default_rng(2).normal(1.0, 2.0, size=shape).astype(np.float32)
    layer(tf.constant(x), training=True)
    mean = x.mean(axis=(0, 1, 2))
    biased_variance = x.var(axis=(0, 1, 2))
    np.testing.assert_allclose(layer.moving_mean, (1 - MOMENTUM) * mean, rtol=1e-5)
    np.testing.assert_allclose(
        layer.moving_variance, MOMENTUM + (1 - MOMENTUM) * biased_variance, rtol=1e-5
    )


@pytest.mark.parametrize("shape", [(4, 6), (2, 4, 5, 6)])
def test_inference_and_frozen_use_moving_statistics(shape):
    ours, reference = _pair(shape)
    rng = np.random.default_rng(3)
    for layer in (ours, reference):
        layer.moving_mean.assign(np.linspace(-1.0, 1.0, shape[-1]).astype(np.float32))
        layer.moving_variance.assign(np.linspace(0.5, 2.0, shape[-1]).astype(np.float32))
    x = tf.constant(rng.normal(size=shape).astype(np.float32))
    np.testing.assert_allclose(
        ours(x, training=False), reference(x, training=False), rtol=1e-5, atol=1e-5
    )
    ours.trainable = False
    reference.trainable = False
    before = ours.moving_mean.numpy()
    np.testing.assert_allclose(
        ours(x, training=True), reference(x, training=True), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_array_equal(ours.moving_mean, before)


def test_bfloat16_policy_tracks_float32():
    shape = (2, 8, 8, 4)
    x = tf.constant(np.random.default_rng(4).normal(size=shape).astype(np.float32))
    full = FusedBatchNorm(momentum=MOMENTUM, epsilon=EPSILON)
    mixed = FusedBatchNorm(momentum=MOMENTUM, epsilon=EPSILON, dtype="mixed_bfloat16")
    y_full = full(x, training=True)
    y_mixed = mixed(tf.cast(x, tf.bfloat16), training=True)
    assert y_mixed.dtype == tf.bfloat16
    assert mixed.gamma.dtype == tf.float32 and mixed.moving_mean.dtype == tf.float32
    np.testing.assert_allclose(tf.cast(y_mixed, tf.float32), y_full, atol=0.05)
    np.testing.assert_allclose(mixed.moving_mean, full.moving_mean, atol=0.01)


def test_compiles_with_xla_and_matches_eager():
    shape = (2, 4, 4, 3)
    ours, reference = _pair(shape)
    x = tf.constant(np.random.default_rng(5).normal(size=shape).astype(np.float32))
    compiled = tf.function(lambda t: _step(ours, t, training=True), jit_compile=True)
    y_ours, g_ours = compiled(x)
    y_ref, g_ref = _step(reference, x, training=True)
    np.testing.assert_allclose(y_ours, y_ref, rtol=1e-4, atol=1e-4)
    for a, b in zip(g_ours, g_ref):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(ours.moving_variance, reference.moving_variance, rtol=1e-5)


def test_same_variable_paths_as_keras_so_checkpoints_carry_over():
    fused = NormActivation(name="norm")
    synced = NormActivation(name="norm", use_sync_bn=True)
    for layer in (fused, synced):
        layer.build((2, 4, 4, 3))
    assert [v.path for v in fused.weights] == [v.path for v in synced.weights]
    assert [v.trainable for v in fused.weights] == [True, True, False, False]
    assert isinstance(fused._bn, FusedBatchNorm)
