"""Mask head: 2x upsampling, the class channel of each ROI, NumPy forward, init."""

import math

import numpy as np
import pytest
from numpy_references import conv_same_np

from detection.configs import loader
from detection.hyperparameters import ParamsError
from detection.modeling.heads import factory
from detection.modeling.heads.mask_head import MaskHead

NUM_CLASSES = 4


def roi_features(batch=2, rois=3, size=4, channels=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, rois, size, size, channels)).astype(np.float32)


def deconv2x2_np(x, kernel, bias):
    """Stride-2 2x2 transposed convolution: output (2i + di, 2j + dj) = x[i, j] . kernel[di, dj]."""
    n, h, w, _ = x.shape
    out = np.zeros((n, 2 * h, 2 * w, kernel.shape[2]))
    for di in range(2):
        for dj in range(2):
            # Keras' transposed kernel is [kh, kw, out, in].
            out[:, di::2, dj::2] = np.einsum("nhwc,oc->nhwo", x, kernel[di, dj])
    return out + bias


def _numpy_logits(head, x):
    b, k, s, _, c = x.shape
    net = x.reshape(b * k, s, s, c).astype(np.float64)
    for conv in head._convs:
        net = np.maximum(conv_same_np(net, conv.kernel.numpy(), conv.bias.numpy()), 0.0)
    up = head._upsample
    net = np.maximum(deconv2x2_np(net, up.kernel.numpy(), up.bias.numpy()), 0.0)
    logits = conv_same_np(net, head._predict.kernel.numpy(), head._predict.bias.numpy())
    return logits.reshape(b, k, 2 * s, 2 * s, -1)


def test_outputs_the_map_of_each_rois_class():
    head = MaskHead(NUM_CLASSES, num_convs=2, num_filters=6)
    x = roi_features()
    classes = np.array([[1, 3, 0], [2, 2, 1]], np.int32)
    head(x, classes)
    rng = np.random.default_rng(2)
    for layer in [*head._convs, head._upsample, head._predict]:
        layer.set_weights(
            [
                rng.normal(scale=0.3, size=layer.kernel.shape),
                rng.normal(scale=0.1, size=layer.bias.shape),
            ]
        )
    masks = head(x, classes, training=False)
    assert masks.shape == (2, 3, 8, 8)
    all_logits = _numpy_logits(head, x)
    expected = np.take_along_axis(all_logits, classes[:, :, None, None, None], axis=-1)[..., 0]
    np.testing.assert_allclose(masks, expected, rtol=1e-4, atol=1e-4)


def test_class_agnostic_batch_norm_and_initialization():
    head = MaskHead(
        NUM_CLASSES,
        num_convs=1,
        num_filters=256,
        use_batch_norm=True,
        class_agnostic_mask_pred=True,
    )
    masks = head(roi_features(channels=8), np.zeros((2, 3), np.int32), training=False)
    assert masks.shape == (2, 3, 8, 8)
    assert head._predict.kernel.shape == (1, 1, 256, 1)
    assert len(head._norms) == 2  # after the conv and after the upsampling
    assert float(np.std(head._convs[0].kernel)) == pytest.approx(math.sqrt(2 / (9 * 256)), rel=0.05)
    assert float(np.std(head._upsample.kernel)) == pytest.approx(math.sqrt(2 / (4 * 256)), rel=0.05)
    np.testing.assert_array_equal(head._upsample.bias, 0.0)


def test_builder_and_bad_values():
    params = loader.load_params(
        "mask_rcnn", [], "mrcnn_head.num_convs=2,architecture.num_classes=5"
    )
    head = factory.mask_head_from_params(params)
    masks = head(roi_features(channels=8), np.ones((2, 3), np.int32))
    assert masks.shape == (2, 3, 8, 8) and head._predict.kernel.shape[-1] == 5
    bad = loader.load_params("mask_rcnn", [], "mrcnn_head.num_filters=0")
    with pytest.raises(ParamsError, match="mrcnn_head: num_filters"):
        factory.mask_head_from_params(bad)
