"""LevelCanvas: one 3x3 'same' convolution of the canvas equals one per map."""

import numpy as np
import pytest
import tensorflow as tf

from detection.modeling.heads.retinanet_head import RetinaNetHead
from detection.modeling.layers.level_canvas import LevelCanvas


@pytest.mark.parametrize(
    "sizes", [[(12, 12), (6, 6), (3, 3)], [(5, 9), (3, 5), (2, 3), (1, 2)], [(2, 2), (7, 4)]]
)
def test_convolution_of_the_canvas_is_the_convolution_of_each_map(sizes):
    rng = np.random.default_rng(len(sizes))
    maps = [tf.constant(rng.normal(size=(2, h, w, 5)), tf.float64) for h, w in sizes]
    kernel = tf.constant(rng.normal(size=(3, 3, 5, 4)), tf.float64)
    canvas = LevelCanvas(sizes)
    packed = canvas.pack(maps)
    assert packed.shape == (2, canvas.height, canvas.width, 5)
    # Everything outside the maps is zero: the maps hold all of the canvas's mass.
    np.testing.assert_allclose(
        tf.reduce_sum(tf.abs(packed)), sum(float(tf.reduce_sum(tf.abs(m))) for m in maps)
    )
    for got, m in zip(canvas.unpack(packed), maps):
        np.testing.assert_array_equal(got, m)
    convolved = canvas.unpack(tf.nn.conv2d(packed, kernel, 1, "SAME"))
    for got, m in zip(convolved, maps):
        np.testing.assert_allclose(got, tf.nn.conv2d(m, kernel, 1, "SAME"), rtol=1e-12)


def test_needs_two_maps():
    with pytest.raises(ValueError, match="at least two maps"):
        LevelCanvas([(3, 3)])


def _features(rng, size, min_level, max_level, channels):
    return {
        str(level): tf.constant(
            rng.normal(size=(2, size // 2**level, size // 2**level, channels)).astype(np.float32)
        )
        for level in range(min_level, max_level + 1)
    }


@pytest.mark.parametrize("training", [True, False])
def test_packed_retinanet_head_equals_the_per_level_head(training):
    """Same weights: packing the coarse levels changes outputs and gradients only in the
    last bits (float32 summation order)."""
    rng = np.random.default_rng(7)
    features = _features(rng, 128, 3, 7, 8)
    heads = [
        RetinaNetHead(3, 7, 3, 2, num_convs=2, num_filters=8, pack_coarse_levels=pack)
        for pack in (False, True)
    ]
    assert heads[1]._coarse_levels(features) == [5, 6, 7]
    heads[0](features, training=training)
    heads[1](features, training=training)
    heads[1].set_weights(heads[0].get_weights())
    results = []
    for head in heads:
        with tf.GradientTape() as tape:
            class_outputs, box_outputs = head(features, training=training)
            loss = sum(
                tf.reduce_sum(tf.sin(o) * (i + 1))
                for i, o in enumerate([*class_outputs.values(), *box_outputs.values()])
            )
        results.append((class_outputs, box_outputs, tape.gradient(loss, head.trainable_variables)))
    (class_a, box_a, grads_a), (class_b, box_b, grads_b) = results
    assert list(class_b) == list(class_a) == ["3", "4", "5", "6", "7"]

    def assert_close(b, a, rtol=1e-5):
        np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol * float(np.max(np.abs(a))))

    for key in class_a:
        assert_close(class_b[key], class_a[key])
        assert_close(box_b[key], box_a[key])
    # The biases in front of a batch norm get rounding noise (their exact gradient is 0), so
    # gradients are compared at the scale of the largest one.
    scale = max(float(np.max(np.abs(a))) for a in grads_a)
    for a, b in zip(grads_a, grads_b):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * scale)
    # Moving statistics saw each level alone.
    for a, b in zip(heads[0].non_trainable_variables, heads[1].non_trainable_variables):
        assert_close(b, a)


def test_packing_defaults_to_bfloat16_and_needs_two_coarse_levels():
    rng = np.random.default_rng(8)
    features = _features(rng, 64, 3, 6, 4)
    assert RetinaNetHead(3, 6, 3, 1, num_filters=4, dtype="mixed_bfloat16")._coarse_levels(
        features
    ) == [5, 6]
    assert RetinaNetHead(3, 6, 3, 1, num_filters=4)._coarse_levels(features) == []
    assert (
        RetinaNetHead(3, 5, 3, 1, num_filters=4, pack_coarse_levels=True)._coarse_levels(features)
        == []
    )
