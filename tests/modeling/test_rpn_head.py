"""RPN head: shapes, shared convs with per-level batch norm, NumPy forward, init."""

import numpy as np
import pytest
from numpy_references import conv_same_np

from detection.configs import loader
from detection.hyperparameters import ParamsError
from detection.modeling.heads import factory, rpn_head

FILTERS = 8
ANCHORS = 3


def features(levels=range(2, 7), size=64, channels=FILTERS, seed=0):
    rng = np.random.default_rng(seed)
    return {
        str(level): rng.normal(size=(2, size // 2**level, size // 2**level, channels)).astype(
            np.float32
        )
        for level in levels
    }


def make_head(**kwargs):
    args = dict(min_level=2, max_level=6, anchors_per_location=ANCHORS, num_filters=FILTERS)
    args.update(kwargs)
    return rpn_head.RpnHead(**args)


def test_output_shapes_per_level():
    scores, boxes = make_head()(features(), training=False)
    assert sorted(scores, key=int) == ["2", "3", "4", "5", "6"]
    for level in range(2, 7):
        side = 64 // 2**level
        assert scores[str(level)].shape == (2, side, side, ANCHORS)
        assert boxes[str(level)].shape == (2, side, side, 4 * ANCHORS)


def test_matches_numpy_with_per_level_batch_norm():
    head = make_head(num_convs=2, use_batch_norm=True)
    feats = features()
    head(feats)
    # Convs shared by the levels, one batch norm per (conv, level).
    assert len([w for w in head.trainable_weights if "kernel" in w.path]) == 2 + 2
    assert len([w for w in head.trainable_weights if "gamma" in w.path]) == 2 * 5
    rng = np.random.default_rng(1)
    for norm in head._norms.values():
        norm._bn.set_weights(
            [
                rng.uniform(0.5, 2, FILTERS),
                rng.normal(size=FILTERS),
                rng.normal(size=FILTERS),
                rng.uniform(0.5, 2, FILTERS),
            ]
        )
    for layer in [*head._convs, head._score_predict, head._box_predict]:
        layer.set_weights(
            [rng.normal(scale=0.3, size=layer.kernel.shape), rng.normal(size=layer.bias.shape)]
        )
    scores, boxes = head(feats, training=False)
    for level in (2, 4, 6):
        x = feats[str(level)].astype(np.float64)
        for i, conv in enumerate(head._convs):
            x = conv_same_np(x, conv.kernel.numpy(), conv.bias.numpy())
            gamma, beta, mean, var = head._norms[(i, level)]._bn.get_weights()
            x = np.maximum((x - mean) / np.sqrt(var + 1e-4) * gamma + beta, 0.0)
        for output, layer in ((scores, head._score_predict), (boxes, head._box_predict)):
            expected = conv_same_np(x, layer.kernel.numpy(), layer.bias.numpy())
            np.testing.assert_allclose(output[str(level)], expected, rtol=1e-3, atol=1e-3)


def test_without_batch_norm_relu_follows_the_conv_and_init_is_the_original():
    head = make_head(num_filters=64)
    feats = features(channels=64)
    scores, _ = head(feats)
    assert not [w for w in head.weights if "gamma" in w.path]
    for layer in (head._convs[0], head._score_predict, head._box_predict):
        assert abs(float(np.std(layer.kernel)) - 0.01) < 0.002, layer.name
        np.testing.assert_array_equal(layer.bias, 0.0)
    x = np.maximum(conv_same_np(feats["3"], head._convs[0].kernel.numpy(), 0.0), 0.0)
    expected = conv_same_np(x, head._score_predict.kernel.numpy(), 0.0)
    np.testing.assert_allclose(scores["3"], expected, rtol=1e-4, atol=1e-5)


def test_zero_convs_predict_from_the_features():
    head = make_head(num_convs=0)
    feats = features()
    scores, _ = head(feats)
    expected = conv_same_np(feats["5"], head._score_predict.kernel.numpy(), 0.0)
    np.testing.assert_allclose(scores["5"], expected, rtol=1e-4, atol=1e-5)


def test_separable_and_errors():
    head = make_head(use_separable_conv=True)
    scores, _ = head(features())
    assert head._convs[0].depthwise_kernel.shape == (3, 3, FILTERS, 1)
    assert scores["2"].shape[-1] == ANCHORS
    feats = features()
    del feats["4"]
    with pytest.raises(KeyError, match="level '4'"):
        make_head()(feats)
    with pytest.raises(ValueError, match="num_convs"):
        make_head(num_convs=-1)


def test_builder_reads_rpn_head_and_checks_anchors_per_location():
    params = loader.load_params("mask_rcnn", [], "rpn_head.num_convs=2,rpn_head.num_filters=16")
    head = factory.rpn_head_from_params(params)
    assert len(head._convs) == 2 and head._convs[0].filters == 16
    bad = loader.load_params("mask_rcnn", [], "rpn_head.anchors_per_location=9")
    with pytest.raises(ParamsError, match="rpn_head.anchors_per_location=9"):
        factory.rpn_head_from_params(bad)
