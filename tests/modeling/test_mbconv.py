"""Squeeze-excitation and MBConv blocks against NumPy re-computations; width rounding."""

import numpy as np
import pytest
import tensorflow as tf

from detection.modeling.layers import mbconv
from detection.modeling.layers import norm_activation
from detection.modeling.layers import squeeze_excitation


def swish(x):
    return x / (1.0 + np.exp(-x))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def pad(x, kernel_size, stride, padding):
    """'fixed': kernel_size - 1 pixels, the extra one at the end (symmetric for odd kernels
    at stride 1). 'same': TensorFlow's, the total depending on the input size."""
    if padding == "fixed":
        total_h = total_w = kernel_size - 1
    else:
        total_h, total_w = (
            max((-(-size // stride) - 1) * stride + kernel_size - size, 0) for size in x.shape[1:3]
        )
    return np.pad(
        x,
        (
            (0, 0),
            (total_h // 2, total_h - total_h // 2),
            (total_w // 2, total_w - total_w // 2),
            (0, 0),
        ),
    )


def conv_np(x, kernel, stride=1, padding="fixed"):
    """NHWC convolution, `kernel [k, k, c_in, c_out]`."""
    k = kernel.shape[0]
    xp = pad(x, k, stride, padding)
    out_h = (xp.shape[1] - k) // stride + 1
    out_w = (xp.shape[2] - k) // stride + 1
    out = np.zeros((x.shape[0], out_h, out_w, kernel.shape[-1]))
    for i in range(out_h):
        for j in range(out_w):
            patch = xp[:, i * stride : i * stride + k, j * stride : j * stride + k]
            out[:, i, j] = np.tensordot(patch, kernel, axes=([1, 2, 3], [0, 1, 2]))
    return out


def depthwise_np(x, kernel, stride=1, padding="fixed"):
    """Depthwise convolution, `kernel [k, k, c, 1]`."""
    k = kernel.shape[0]
    xp = pad(x, k, stride, padding)
    out_h = (xp.shape[1] - k) // stride + 1
    out_w = (xp.shape[2] - k) // stride + 1
    out = np.zeros((x.shape[0], out_h, out_w, x.shape[-1]))
    for i in range(out_h):
        for j in range(out_w):
            patch = xp[:, i * stride : i * stride + k, j * stride : j * stride + k]
            out[:, i, j] = np.einsum("bhwc,hwc->bc", patch, kernel[..., 0])
    return out


def bn_np(x, layer):
    """Inference batch norm of a `NormActivation`, then its activation if it applies one."""
    bn = layer._bn
    y = (x - bn.moving_mean.numpy()) / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
    y = y * bn.gamma.numpy() + bn.beta.numpy()
    if layer._apply_activation:
        y = swish(y) if layer._activation_name == "swish" else np.maximum(y, 0.0)
    return y


def randomize(layer, seed):
    """Random weights everywhere (positive moving variances) so every term matters."""
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        if "moving_variance" in w.path:
            w.assign(rng.uniform(0.5, 1.5, size=w.shape).astype(np.float32))
        else:
            w.assign(rng.normal(0.0, 0.3, size=w.shape).astype(np.float32))


def se_np(x, se):
    squeezed = x.mean(axis=(1, 2))
    hidden = swish(squeezed @ se._reduce.kernel.numpy()[0, 0] + se._reduce.bias.numpy())
    gate = sigmoid(hidden @ se._expand.kernel.numpy()[0, 0] + se._expand.bias.numpy())
    return x * gate[:, None, None, :]


def test_squeeze_excitation_matches_numpy():
    x = np.random.default_rng(0).normal(size=(2, 5, 6, 24)).astype(np.float32)
    layer = squeeze_excitation.SqueezeExcitation(in_filters=4, se_ratio=0.5, expand_ratio=6)
    layer(x)
    randomize(layer, 1)
    # The squeeze width follows the unexpanded input width: int(4 * 0.5) = 2.
    assert layer._reduce.kernel.shape == (1, 1, 24, 2)
    assert layer._expand.kernel.shape == (1, 1, 2, 24)
    np.testing.assert_allclose(layer(x).numpy(), se_np(x, layer), rtol=1e-5, atol=1e-5)


def test_squeeze_excitation_rejects_bad_values():
    with pytest.raises(ValueError, match="se_ratio"):
        squeeze_excitation.SqueezeExcitation(8, 1.5)
    layer = squeeze_excitation.SqueezeExcitation(4, 0.25, expand_ratio=2)
    with pytest.raises(ValueError, match="8 input channels"):
        layer(np.zeros((1, 2, 2, 6), np.float32))
    assert squeeze_excitation.num_squeezed_filters(3, 0.2) == 1


def _kernel(layer):
    return getattr(layer, "_conv", layer).kernel.numpy()


def mbconv_np(x, block, padding="fixed"):
    h = x
    if block._expand is not None:
        h = bn_np(conv_np(h, _kernel(block._expand)), block._expand_norm)
    h = depthwise_np(h, block._depthwise.kernel.numpy(), block._strides, padding)
    h = bn_np(h, block._depthwise_norm)
    if block._se is not None:
        h = se_np(h, block._se)
    h = bn_np(conv_np(h, _kernel(block._project)), block._project_norm)
    return h + x if block.has_shortcut else h


@pytest.mark.parametrize(
    "in_filters, out_filters, expand_ratio, strides, kernel_size, se_ratio, activation, padding",
    [
        (8, 8, 6, 1, 3, 0.25, "swish", "fixed"),  # shortcut + SE
        (8, 12, 6, 2, 5, 0.25, "swish", "fixed"),  # strided, width change, 5x5
        (8, 16, 1, 1, 3, None, "relu", "fixed"),  # no expansion, no SE
        (6, 6, 4, 2, 3, 0.2, "relu", "fixed"),  # same width but strided: no shortcut
        # EfficientNet's padding; on even sizes it differs from the fixed one when strided.
        (8, 12, 6, 2, 5, 0.25, "swish", "same"),
        (8, 8, 6, 1, 3, 0.25, "swish", "same"),
    ],
)
def test_mbconv_matches_numpy(
    in_filters, out_filters, expand_ratio, strides, kernel_size, se_ratio, activation, padding
):
    height, width = (7, 9) if padding == "fixed" else (8, 10)
    x = np.random.default_rng(2).normal(size=(2, height, width, in_filters)).astype(np.float32)
    block = mbconv.MBConvBlock(
        in_filters,
        out_filters,
        expand_ratio,
        strides,
        kernel_size=kernel_size,
        se_ratio=se_ratio,
        norm_activation=norm_activation.NormActivationConfig(activation=activation),
        drop_connect_rate=0.5,
        padding=padding,
    )
    block(x, training=False)
    randomize(block, 3)
    out = block(x, training=False).numpy()
    assert out.shape == (2, -(-height // strides), -(-width // strides), out_filters)
    np.testing.assert_allclose(out, mbconv_np(x, block, padding), rtol=1e-4, atol=1e-4)
    assert block.has_shortcut == (in_filters == out_filters and strides == 1)
    assert (block._expand is None) == (expand_ratio == 1)


def test_mbconv_stochastic_depth_only_in_training():
    x = np.random.default_rng(4).normal(size=(8, 4, 4, 8)).astype(np.float32)
    tf.keras.utils.set_random_seed(0)
    block = mbconv.MBConvBlock(8, 8, 2, 1, se_ratio=0.25, drop_connect_rate=0.5)
    block(x, training=False)
    randomize(block, 5)
    reference = mbconv_np(x, block)
    np.testing.assert_allclose(block(x, training=False).numpy(), reference, rtol=1e-4, atol=1e-4)
    # In training the residual branch of each example is either dropped (output = input)
    # or kept and scaled by 1 / (1 - rate). Batch statistics change the branch in training,
    # so only the dropped examples have an exact reference.
    out = block(x, training=True).numpy()
    dropped = [np.allclose(out[i], x[i]) for i in range(len(x))]
    assert 0 < sum(dropped) < len(x)


def test_mbconv_rejects_wrong_input_width():
    block = mbconv.MBConvBlock(8, 8, 6, 1)
    with pytest.raises(ValueError, match="expects 8 input channels"):
        block(np.zeros((1, 4, 4, 6), np.float32))
    with pytest.raises(ValueError, match="expand_ratio"):
        mbconv.MBConvBlock(8, 8, 0, 1)
    with pytest.raises(ValueError, match="padding"):
        mbconv.MBConvBlock(8, 8, 6, 1, padding="valid")


def test_depthwise_fixed_padding_sizes():
    for size in (7, 8):
        x = np.zeros((1, size, size, 3), np.float32)
        out = mbconv.DepthwiseConv2DFixedPadding(3, 2)(x)
        assert out.shape == (1, -(-size // 2), -(-size // 2), 3)


@pytest.mark.parametrize(
    "filters, multiplier, expected",
    [
        (32, 1.0, 32),
        (32, 2.0, 64),
        (16, 1.1, 16),  # 17.6 -> 16 (a loss under 10%)
        (40, 1.1, 48),  # 44 rounds up to 48
        (24, 1.4, 32),  # 33.6 -> 32
        (112, 1.8, 200),  # 201.6 -> 200
        (8, 0.65, 8),  # never below the divisor
        (80, 0.6, 48),
        (12, 0.6, 8),
        (320, 3.1, 992),
        (16, None, 16),
    ],
)
def test_round_filters(filters, multiplier, expected):
    assert mbconv.round_filters(filters, multiplier) == expected
