"""Fast R-CNN box head: conv/fc layout, NumPy forward, class-agnostic boxes, init."""

import math

import numpy as np
import pytest
from numpy_references import conv_same_np

from detection.configs import loader
from detection.hyperparameters import ParamsError
from detection.modeling.heads import factory
from detection.modeling.heads.fast_rcnn_head import FastRCNNHead

NUM_CLASSES = 4


def roi_features(batch=2, rois=5, size=7, channels=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, rois, size, size, channels)).astype(np.float32)


def test_default_two_fc_head_shapes_and_numpy_forward():
    head = FastRCNNHead(NUM_CLASSES, num_fcs=2, fc_dims=16)
    x = roi_features()
    classes, boxes = head(x)
    assert classes.shape == (2, 5, NUM_CLASSES) and boxes.shape == (2, 5, 4 * NUM_CLASSES)
    net = x.reshape(2, 5, -1).astype(np.float64)
    for fc in head._fcs:
        net = np.maximum(net @ fc.kernel.numpy() + fc.bias.numpy(), 0.0)
    np.testing.assert_allclose(classes, net @ head._class_predict.kernel.numpy(), atol=1e-5)
    np.testing.assert_allclose(boxes, net @ head._box_predict.kernel.numpy(), atol=1e-6)


def test_conv_fc_head_with_batch_norm_matches_numpy():
    head = FastRCNNHead(
        NUM_CLASSES, num_convs=2, num_filters=6, num_fcs=1, fc_dims=10, use_batch_norm=True
    )
    x = roi_features(channels=4)
    head(x)
    rng = np.random.default_rng(3)
    for norm in head._conv_norms + head._fc_norms:
        c = norm._bn.gamma.shape[0]
        norm._bn.set_weights(
            [rng.uniform(0.5, 2, c), rng.normal(size=c), rng.normal(size=c), rng.uniform(0.5, 2, c)]
        )
    classes, boxes = head(x, training=False)

    def bn_relu(v, norm):
        gamma, beta, mean, var = norm._bn.get_weights()
        return np.maximum((v - mean) / np.sqrt(var + 1e-4) * gamma + beta, 0.0)

    net = x.reshape(10, 7, 7, 4).astype(np.float64)
    for conv, norm in zip(head._convs, head._conv_norms):
        net = bn_relu(conv_same_np(net, conv.kernel.numpy(), conv.bias.numpy()), norm)
    net = net.reshape(2, 5, 7 * 7 * 6)
    net = bn_relu(net @ head._fcs[0].kernel.numpy() + head._fcs[0].bias.numpy(), head._fc_norms[0])
    np.testing.assert_allclose(classes, net @ head._class_predict.kernel.numpy(), atol=1e-4)
    np.testing.assert_allclose(boxes, net @ head._box_predict.kernel.numpy(), atol=1e-4)
    # The 4conv1fc layout: conv kernels 3x3xcxf, then one fc from 7*7*f.
    assert head._fcs[0].kernel.shape == (7 * 7 * 6, 10)


def test_class_agnostic_boxes_and_initialization():
    head = FastRCNNHead(
        NUM_CLASSES, num_convs=1, num_filters=256, fc_dims=64, class_agnostic_bbox_pred=True
    )
    _, boxes = head(roi_features(channels=8))
    assert boxes.shape == (2, 5, 4) and head.class_agnostic_bbox_pred
    # MSRA fill for convs (sqrt(2 / (9 * 256)) = 0.0295), N(0, 0.01) class, N(0, 0.001) box.
    assert float(np.std(head._convs[0].kernel)) == pytest.approx(math.sqrt(2 / (9 * 256)), rel=0.05)
    assert float(np.std(head._class_predict.kernel)) == pytest.approx(0.01, rel=0.1)
    assert float(np.std(head._box_predict.kernel)) == pytest.approx(0.001, rel=0.15)
    for layer in (head._convs[0], head._fcs[0], head._class_predict, head._box_predict):
        np.testing.assert_array_equal(layer.bias, 0.0)


def test_builder_and_bad_values():
    params = loader.load_params(
        "mask_rcnn", [], "frcnn_head.num_convs=4,frcnn_head.num_fcs=1,architecture.num_classes=5"
    )
    head = factory.fast_rcnn_head_from_params(params, name="stage_1")
    assert head.name == "stage_1" and len(head._convs) == 4 and len(head._fcs) == 1
    bad = loader.load_params("mask_rcnn", [], "frcnn_head.fc_dims=0")
    with pytest.raises(ParamsError, match="frcnn_head: fc_dims"):
        factory.fast_rcnn_head_from_params(bad)
    with pytest.raises(ValueError, match="roi_features must be"):
        FastRCNNHead(NUM_CLASSES)(np.zeros((2, 7, 7, 8), np.float32))
