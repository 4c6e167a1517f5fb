"""`detection.modeling.layers.conv.Conv2D`: bfloat16 1x1 kernels as matrix products.

The reference is TensorFlow's own convolution (`tf.nn.conv2d`) on the same kernel, in float32
on bfloat16-rounded inputs, so both sides see the same operands.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from detection.modeling import flops
from detection.modeling.layers.conv import Conv2D, Conv2DFixedPadding


def _bf16_rounded(array):
    return tf.cast(tf.cast(array, tf.bfloat16), tf.float32)


def _reference(layer, inputs):
    """(float32 `tf.nn.conv2d` of the layer's own kernel on bfloat16-rounded data, the
    rounded bias)."""
    kernel = _bf16_rounded(layer.kernel)
    outputs = tf.nn.conv2d(
        _bf16_rounded(inputs), kernel, strides=layer.strides, padding=layer.padding.upper()
    )
    return outputs, _bf16_rounded(layer.bias)


def _uses_matmul(layer, inputs):
    graph = tf.function(layer).get_concrete_function(tf.TensorSpec(inputs.shape)).graph
    types = {op.type for op in graph.get_operations()}
    return "MatMul" in types, "Conv2D" in types


@pytest.mark.parametrize(
    "strides, padding, size", [(1, "same", (9, 7)), (2, "same", (9, 8)), (2, "valid", (8, 9))]
)
def test_bfloat16_pointwise_is_a_matmul_with_the_convolution_values(strides, padding, size):
    rng = np.random.default_rng(strides)
    inputs = tf.constant(rng.normal(size=(2, *size, 48)).astype(np.float32))
    layer = Conv2D(
        40, 1, strides=strides, padding=padding, bias_initializer="ones", dtype="mixed_bfloat16"
    )
    outputs = layer(inputs)
    products, bias = _reference(layer, inputs)
    assert outputs.dtype == tf.bfloat16 and outputs.shape == products.shape
    # The layer rounds the products to bfloat16 (8 significant bits), then their sum with
    # the bias: at most half a unit in the last place of each.
    error = np.abs(tf.cast(outputs, tf.float32) - (products + bias))
    bound = 2**-8 * (np.abs(products) + np.abs(products + bias)) + 1e-6
    assert np.all(error <= bound), float(np.max(error - bound))
    assert _uses_matmul(layer, inputs) == (True, False)


def test_bfloat16_pointwise_gradients_match_the_convolution():
    rng = np.random.default_rng(3)
    inputs = tf.constant(rng.normal(size=(2, 9, 10, 32)).astype(np.float32))
    upstream = tf.constant(rng.normal(size=(2, 5, 5, 24)).astype(np.float32))
    layer = Conv2D(24, 1, strides=2, dtype="mixed_bfloat16")
    layer.build(inputs.shape)

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(inputs)
        loss = tf.reduce_sum(tf.cast(layer(inputs), tf.float32) * upstream)
        kernel16 = tf.cast(layer.kernel, tf.bfloat16)
        plain = tf.nn.conv2d(tf.cast(inputs, tf.bfloat16), kernel16, 2, "SAME")
        reference_loss = tf.reduce_sum(tf.cast(plain, tf.float32) * upstream)
    for ours, theirs in zip(
        tape.gradient(loss, [inputs, layer.kernel]),
        tape.gradient(reference_loss, [inputs, layer.kernel]),
    ):
        scale = float(tf.reduce_max(tf.abs(theirs)))
        np.testing.assert_allclose(ours, theirs, atol=scale * 2**-7)


def test_float32_and_other_kernels_stay_convolutions():
    inputs = tf.zeros([1, 8, 8, 16])
    assert _uses_matmul(Conv2D(8, 1), inputs) == (False, True)
    assert _uses_matmul(Conv2D(8, 3, dtype="mixed_bfloat16"), inputs) == (False, True)
    assert _uses_matmul(Conv2D(8, 1, dilation_rate=2, dtype="mixed_bfloat16"), inputs) == (
        False,
        True,
    )


def test_float32_pointwise_equals_keras_conv2d_exactly():
    rng = np.random.default_rng(4)
    inputs = tf.constant(rng.normal(size=(2, 7, 7, 16)).astype(np.float32))
    ours = Conv2DFixedPadding(8, 1, strides=2)
    theirs = keras.layers.Conv2D(8, 1, strides=2, padding="valid", use_bias=False)
    ours.build(inputs.shape)
    theirs.build(inputs.shape)
    theirs.set_weights(ours.get_weights())
    np.testing.assert_array_equal(ours(inputs), theirs(inputs))


def test_bfloat16_pointwise_compiles_with_xla_and_counts_the_same_macs():
    inputs = tf.random.normal([2, 12, 12, 64])
    layer = Conv2D(32, 1, strides=2, dtype="mixed_bfloat16")
    eager = layer(inputs)
    compiled = tf.function(layer, jit_compile=True)(inputs)
    np.testing.assert_allclose(
        tf.cast(compiled, tf.float32), tf.cast(eager, tf.float32), rtol=2**-7, atol=1e-3
    )
    as_conv = Conv2D(32, 1, strides=2)
    as_conv.build(inputs.shape)
    expected = 2 * 6 * 6 * 32 * 64  # outputs x inputs per output
    assert flops.count_macs(layer, inputs.shape) == expected
    assert flops.count_macs(as_conv, inputs.shape) == expected


def test_checkpoint_variables_do_not_depend_on_the_dtype():
    inputs = tf.zeros([1, 4, 4, 8])
    for policy in ("float32", "mixed_bfloat16"):
        layer = Conv2DFixedPadding(4, 1, strides=1, dtype=policy)
        layer.build(inputs.shape)
        assert [(v.path, tuple(v.shape)) for v in layer.weights] == [
            (f"{layer.name}/conv/kernel", (1, 1, 8, 4))
        ]
