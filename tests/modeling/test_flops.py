"""count_macs of einsum contractions (ShapeMask's box-to-box mask resampling) by hand."""

import tensorflow as tf

from detection.modeling import flops


def test_count_macs_of_einsums():
    a = tf.ones([2, 3, 4, 5])
    # [b, k, i, y] x [b, k, y, x]: each of the 2*3*4*6 outputs sums 5 products.
    assert flops.count_macs(
        lambda x: tf.einsum("bkiy,bkyx->bkix", x, tf.ones([2, 3, 5, 6])), a.shape
    ) == (2 * 3 * 4 * 6 * 5)
    # With an ellipsis and an outer product (nothing summed).
    assert flops.count_macs(lambda x: tf.einsum("...y,z->...yz", x, tf.ones([7])), a.shape) == (
        2 * 3 * 4 * 5 * 7
    )
    # A one-operand einsum (a transpose or a sum) multiplies nothing.
    assert flops.count_macs(lambda x: tf.einsum("bkiy->bkyi", x), a.shape) == 0
    # Three operands become two pairwise contractions.
    rows, cols = tf.ones([2, 3, 8, 5]), tf.ones([2, 3, 8, 5])
    three = flops.count_macs(
        lambda x: tf.einsum("bkiy,bkyx,bkjx->bkij", rows, x[..., :5, :], cols), (2, 3, 5, 5)
    )
    assert three in (2 * 3 * (8 * 5 * 5 + 8 * 8 * 5), 2 * 3 * (5 * 5 * 8 + 8 * 8 * 5))
