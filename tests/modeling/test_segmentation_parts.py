"""Segmentation head, ASPP, pyramid fusion and the per-pixel loss against NumPy references."""

import numpy as np
import pytest
import tensorflow as tf

from detection.modeling.heads.segmentation_head import SegmentationHead
from detection.modeling.layers.aspp import Aspp
from detection.modeling.losses.segmentation_loss import SegmentationLoss
from detection.modeling.networks.segmentation_network import fuse_pyramid


def _bilinear_resize(array, size):
    """NumPy bilinear resize with half-pixel centres (TF2's tf.image.resize 'bilinear')."""

    def weights(out, length):
        coords = np.clip((np.arange(out) + 0.5) * length / out - 0.5, 0, length - 1)
        low = np.floor(coords).astype(int)
        return low, np.minimum(low + 1, length - 1), coords - low

    y0, y1, wy = weights(size[0], array.shape[1])
    x0, x1, wx = weights(size[1], array.shape[2])
    wy, wx = wy[None, :, None, None], wx[None, None, :, None]
    top = array[:, y0][:, :, x0] * (1 - wx) + array[:, y0][:, :, x1] * wx
    bottom = array[:, y1][:, :, x0] * (1 - wx) + array[:, y1][:, :, x1] * wx
    return top * (1 - wy) + bottom * wy


def test_head_shapes_upsampling_and_layers():
    features = {"3": tf.random.normal([2, 8, 8, 6]), "4": tf.random.normal([2, 4, 4, 6])}
    head = SegmentationHead(5, level=4, num_convs=2, upsample_factor=2, upsample_num_filters=7)
    logits = head(features)
    assert logits.shape == (2, 8, 8, 5)
    shapes = [tuple(w.shape) for w in head.trainable_weights]
    # Two 3x3 convs keeping the 6 channels (and their batch norms), a 2x2 stride-2 transposed
    # conv to 7 channels, the 1x1 classifier.
    assert sorted(shapes) == sorted(
        [(3, 3, 6, 6), (6,)] * 2  # kernels and biases of the hidden convs
        + [(6,)] * 4  # gamma and beta of their batch norms
        + [(2, 2, 7, 6), (7,), (1, 1, 7, 5), (5,)]  # transposed conv, classifier
    )
    plain = SegmentationHead(3, level=3, num_convs=1, use_batch_norm=False)
    assert plain(features).shape == (2, 8, 8, 3)
    assert len(plain.trainable_weights) == 4  # conv + classifier, no batch norm
    with pytest.raises(ValueError, match="segmentation_head.level=5"):
        SegmentationHead(3, level=5)(features)
    with pytest.raises(ValueError, match="segmentation_head.upsample_factor"):
        SegmentationHead(3, upsample_factor=0)


def test_aspp_keeps_the_size():
    aspp = Aspp(filters=8)
    x = tf.random.normal([2, 6, 5, 3])
    y = aspp(x, training=True)
    assert y.shape == (2, 6, 5, 8)
    # 5 branches of bias-free convs (pool, 1x1, 3 atrous) + the projection of 5 * 8 channels.
    kernels = [tuple(w.shape) for w in aspp.trainable_weights if len(w.shape) == 4]
    assert sorted(kernels) == sorted([(1, 1, 3, 8)] * 2 + [(3, 3, 3, 8)] * 3 + [(1, 1, 40, 8)])


def test_fuse_pyramid_equals_numpy_bilinear():
    rng = np.random.default_rng(0)
    features = {
        "3": rng.normal(size=(1, 8, 12, 4)).astype(np.float32),
        "4": rng.normal(size=(1, 4, 6, 4)).astype(np.float32),
        "5": rng.normal(size=(1, 2, 3, 4)).astype(np.float32),
    }
    fused = fuse_pyramid({k: tf.constant(v) for k, v in features.items()}, 4).numpy()
    expected = (
        features["4"]
        + _bilinear_resize(features["3"], (4, 6))
        + _bilinear_resize(features["5"], (4, 6))
    )
    np.testing.assert_allclose(fused, expected, atol=1e-5)


def _numpy_loss(logits, labels, num_classes, ignore, weights=None, smoothing=0.0):
    keep = (labels != ignore) & (labels >= 0) & (labels < num_classes)
    safe = np.where(keep, labels, 0)
    targets = np.eye(num_classes)[safe] * (1 - smoothing) + smoothing / num_classes
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    losses = -(targets * log_probs).sum(-1)
    pixel_weights = (np.ones(num_classes) if weights is None else np.asarray(weights))[safe]
    return (losses * pixel_weights * keep).sum() / keep.sum()


def test_loss_at_groundtruth_size_with_ignore_weights_and_smoothing():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 5, 3)).astype(np.float32)
    labels = rng.integers(0, 3, (2, 8, 10))
    labels[0, :2] = 255
    labels[1, -1] = -1  # eval padding arrives as -1
    weights = [0.5, 1.0, 2.0]
    loss = SegmentationLoss(3, 255, weights, use_groundtruth_dimension=True, label_smoothing=0.1)
    upsampled = _bilinear_resize(logits, (8, 10))
    expected = _numpy_loss(upsampled, labels, 3, 255, weights, 0.1)
    assert float(loss(tf.constant(logits), tf.constant(labels))) == pytest.approx(
        expected, rel=1e-5
    )


def test_loss_at_logits_size_resizes_labels_nearest():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(1, 4, 4, 2)).astype(np.float32)
    labels = np.kron(rng.integers(0, 2, (1, 4, 4)), np.ones((1, 2, 2), int))
    labels[0, 0:2, 0:2] = 255
    loss = SegmentationLoss(2, 255, (), use_groundtruth_dimension=False)
    expected = _numpy_loss(logits, labels[:, ::2, ::2], 2, 255)
    assert float(loss(tf.constant(logits), tf.constant(labels))) == pytest.approx(
        expected, rel=1e-5
    )
    all_ignored = np.full((1, 8, 8), 255)
    assert float(loss(tf.constant(logits), tf.constant(all_ignored))) == 0.0


def test_loss_rejects_bad_class_weights():
    with pytest.raises(ValueError, match="segmentation_loss.class_weights"):
        SegmentationLoss(3, class_weights=[1.0, 2.0])
