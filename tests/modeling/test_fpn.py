"""FPN: shapes, a NumPy re-computation of the topology, options, errors."""

import keras
import numpy as np
import pytest

from detection.modeling.decoders import fpn


def conv2d_same_np(x, kernel, bias, stride=1):
    """Brute-force NHWC convolution with TensorFlow's 'SAME' padding."""
    n, h, w, cin = x.shape
    kh, kw, _, cout = kernel.shape
    out_h, out_w = -(-h // stride), -(-w // stride)
    pad_h = max((out_h - 1) * stride + kh - h, 0)
    pad_w = max((out_w - 1) * stride + kw - w, 0)
    xp = np.pad(
        x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0))
    )
    out = np.zeros((n, out_h, out_w, cout))
    for i in range(out_h):
        for j in range(out_w):
            patch = xp[:, i * stride : i * stride + kh, j * stride : j * stride + kw]
            out[:, i, j] = np.tensordot(patch, kernel, axes=([1, 2, 3], [0, 1, 2]))
    return out + bias


def upsample_np(x):
    return x.repeat(2, axis=1).repeat(2, axis=2)


def backbone_features(size=64, channels=(8, 12, 16, 20), seed=0):
    rng = np.random.default_rng(seed)
    return {
        str(level): rng.normal(size=(2, size // 2**level, size // 2**level, c)).astype(np.float32)
        for level, c in zip(range(2, 6), channels)
    }


def _weights(layer):
    return layer.kernel.numpy(), layer.bias.numpy()


def test_output_shapes_and_levels():
    layer = fpn.Fpn(min_level=3, max_level=7, fpn_feat_dims=16)
    out = layer(backbone_features(128), training=False)
    assert sorted(out, key=int) == ["3", "4", "5", "6", "7"]
    for level in range(3, 8):
        size = 128 // 2**level
        assert out[str(level)].shape == (2, size, size, 16)


def test_matches_numpy_recomputation_without_batch_norm():
    feats = backbone_features(64)
    layer = fpn.Fpn(3, 7, fpn_feat_dims=8, use_batch_norm=False)
    out = layer(feats)
    lateral = {
        level: conv2d_same_np(feats[str(level)], *_weights(layer._lateral[level]))
        for level in (3, 4, 5)
    }
    merged = {5: lateral[5]}
    merged[4] = upsample_np(merged[5]) + lateral[4]
    merged[3] = upsample_np(merged[4]) + lateral[3]
    expected = {
        level: conv2d_same_np(merged[level], *_weights(layer._post_hoc[level]))
        for level in (3, 4, 5)
    }
    # P6 convolves the P5 output itself; P7 convolves relu(P6).
    expected[6] = conv2d_same_np(expected[5], *_weights(layer._extra[6]), 2)
    expected[7] = conv2d_same_np(np.maximum(expected[6], 0.0), *_weights(layer._extra[7]), 2)
    for level in range(3, 8):
        np.testing.assert_allclose(out[str(level)], expected[level], rtol=1e-4, atol=1e-4)


def test_odd_level_sizes_crop_the_upsampled_level():
    # A 100 px image: levels 3, 4, 5 are ceil(100 / 2^l) = 13, 7, 4 pixels, so 2x upsampling
    # overshoots by one row and column; SpineNet at 64 px has two 1x1 top levels.
    rng = np.random.default_rng(3)
    feats = {
        str(level): rng.normal(size=(1, side, side, 4)).astype(np.float32)
        for level, side in ((3, 13), (4, 7), (5, 4), (6, 2), (7, 1))
    }
    layer = fpn.Fpn(3, 7, fpn_feat_dims=4, use_batch_norm=False)
    out = layer(feats)
    for level, side in ((3, 13), (4, 7), (5, 4), (6, 2), (7, 1)):
        assert out[str(level)].shape == (1, side, side, 4)
    lateral = {
        level: conv2d_same_np(feats[str(level)], *_weights(layer._lateral[level]))
        for level in range(3, 8)
    }
    merged = {7: lateral[7]}
    for level in range(6, 2, -1):
        side = lateral[level].shape[1]
        merged[level] = upsample_np(merged[level + 1])[:, :side, :side] + lateral[level]
    for level in range(3, 8):
        expected = conv2d_same_np(merged[level], *_weights(layer._post_hoc[level]))
        np.testing.assert_allclose(out[str(level)], expected, rtol=1e-4, atol=1e-4)


def test_batch_norm_is_applied_to_every_output_level():
    feats = backbone_features(64)
    with_bn = fpn.Fpn(3, 7, fpn_feat_dims=8, use_batch_norm=True)
    without_bn = fpn.Fpn(3, 7, fpn_feat_dims=8, use_batch_norm=False)
    with_bn(feats)
    without_bn(feats)
    for level in range(3, 8):
        for a, b in (
            (with_bn._lateral, without_bn._lateral),
            (with_bn._post_hoc, without_bn._post_hoc),
            (with_bn._extra, without_bn._extra),
        ):
            if level in a:
                b[level].set_weights(a[level].get_weights())
        norm = with_bn._norms[level]._bn
        rng = np.random.default_rng(level)
        norm.set_weights(
            [
                rng.uniform(0.5, 2.0, 8),
                rng.normal(size=8),
                rng.normal(size=8),
                rng.uniform(0.5, 2.0, 8),
            ]
        )
    out = with_bn(feats, training=False)
    raw = without_bn(feats)
    for level in range(3, 8):
        gamma, beta, mean, var = with_bn._norms[level]._bn.get_weights()
        expected = (raw[str(level)].numpy() - mean) / np.sqrt(
            var + 1e-4
        ) * gamma + beta  # No activation after the FPN batch norm.
        np.testing.assert_allclose(out[str(level)], expected, rtol=1e-4, atol=1e-4)


def test_no_extra_levels_when_max_level_is_the_backbone_top():
    layer = fpn.Fpn(min_level=2, max_level=5, fpn_feat_dims=4)
    out = layer(backbone_features(64))
    assert sorted(out, key=int) == ["2", "3", "4", "5"]
    assert not layer._extra


def test_separable_convolutions():
    layer = fpn.Fpn(3, 7, fpn_feat_dims=8, use_separable_conv=True, use_batch_norm=False)
    out = layer(backbone_features(64))
    assert out["7"].shape == (2, 1, 1, 8)
    assert isinstance(layer._post_hoc[3], keras.layers.SeparableConv2D)
    assert layer._post_hoc[3].depthwise_kernel.shape == (3, 3, 8, 1)
    assert layer._post_hoc[3].pointwise_kernel.shape == (1, 1, 8, 8)
    assert layer._extra[6].depthwise_kernel.shape == (3, 3, 8, 1)


def test_rejects_min_level_below_backbone():
    feats = backbone_features(64)
    del feats["2"], feats["3"]
    with pytest.raises(ValueError, match="min_level 3"):
        fpn.Fpn(3, 7, fpn_feat_dims=4)(feats)


def test_rejects_bad_levels():
    with pytest.raises(ValueError, match="min_level"):
        fpn.Fpn(min_level=5, max_level=4)
