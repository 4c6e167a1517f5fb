"""RetinaNet head: shapes, weight sharing, per-level batch norm, init."""

import math

import numpy as np
import pytest
import tensorflow as tf

from detection.modeling.heads import retinanet_head

NUM_CLASSES = 3
ANCHORS = 4
FILTERS = 8


def conv3x3_same_np(x, kernel, bias):
    n, h, w, _ = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((n, h, w, kernel.shape[-1]))
    for i in range(h):
        for j in range(w):
            out[:, i, j] = np.tensordot(
                xp[:, i : i + 3, j : j + 3], kernel, axes=([1, 2, 3], [0, 1, 2])
            )
    return out + bias


def fpn_features(size=64, channels=FILTERS, levels=range(3, 8), seed=0):
    rng = np.random.default_rng(seed)
    return {
        str(level): rng.normal(
            size=(2, max(size // 2**level, 1), max(size // 2**level, 1), channels)
        ).astype(np.float32)
        for level in levels
    }


def make_head(**kwargs):
    args = dict(
        min_level=3,
        max_level=7,
        num_classes=NUM_CLASSES,
        anchors_per_location=ANCHORS,
        num_convs=2,
        num_filters=FILTERS,
    )
    args.update(kwargs)
    return retinanet_head.RetinaNetHead(**args)


def test_output_shapes():
    head = make_head()
    class_outputs, box_outputs = head(fpn_features(128), training=False)
    assert sorted(class_outputs, key=int) == ["3", "4", "5", "6", "7"]
    for level in range(3, 8):
        size = 128 // 2**level
        assert class_outputs[str(level)].shape == (2, size, size, ANCHORS * NUM_CLASSES)
        assert box_outputs[str(level)].shape == (2, size, size, ANCHORS * 4)


def test_convs_are_shared_and_batch_norms_are_per_level():
    head = make_head(num_convs=3)
    head(fpn_features())
    kernels = [w for w in head.trainable_weights if "kernel" in w.path]
    # 3 hidden convs per subnet + 2 predictors, whatever the number of levels.
    assert len(kernels) == 2 * 3 + 2
    gammas = [w for w in head.trainable_weights if "gamma" in w.path]
    assert len(gammas) == 2 * 3 * 5


def test_matches_numpy_with_level_specific_batch_norm():
    head = make_head()
    feats = fpn_features(32, levels=(3, 4, 5, 6, 7))
    head(feats)
    rng = np.random.default_rng(1)
    for norm in list(head._class_norms.values()) + list(head._box_norms.values()):
        c = FILTERS
        norm._bn.set_weights(
            [rng.uniform(0.5, 2, c), rng.normal(size=c), rng.normal(size=c), rng.uniform(0.5, 2, c)]
        )
    for layer in [*head._class_convs, *head._box_convs, head._class_predict, head._box_predict]:
        layer.set_weights(
            [rng.normal(scale=0.3, size=layer.kernel.shape), rng.normal(size=layer.bias.shape)]
        )
    class_outputs, box_outputs = head(feats, training=False)

    def subnet(x, level, convs, norms, prefix, predict):
        for i, conv in enumerate(convs):
            x = conv3x3_same_np(x, conv.kernel.numpy(), conv.bias.numpy())
            gamma, beta, mean, var = norms[f"{prefix}-{i}-{level}"]._bn.get_weights()
            x = np.maximum((x - mean) / np.sqrt(var + 1e-4) * gamma + beta, 0.0)
        return conv3x3_same_np(x, predict.kernel.numpy(), predict.bias.numpy())

    for level in (3, 5, 7):
        x = feats[str(level)].astype(np.float64)
        np.testing.assert_allclose(
            class_outputs[str(level)],
            subnet(x, level, head._class_convs, head._class_norms, "class", head._class_predict),
            rtol=1e-3,
            atol=1e-3,
        )
        np.testing.assert_allclose(
            box_outputs[str(level)],
            subnet(x, level, head._box_convs, head._box_norms, "box", head._box_predict),
            rtol=1e-3,
            atol=1e-3,
        )


def test_without_batch_norm_only_the_activation_follows_each_conv():
    head = make_head(use_batch_norm=False)
    feats = fpn_features(32, levels=(3, 4, 5, 6, 7))
    class_outputs, _ = head(feats)
    assert not [w for w in head.weights if "gamma" in w.path]
    x = feats["4"].astype(np.float64)
    for conv in head._class_convs:
        x = np.maximum(conv3x3_same_np(x, conv.kernel.numpy(), conv.bias.numpy()), 0.0)
    expected = conv3x3_same_np(
        x, head._class_predict.kernel.numpy(), head._class_predict.bias.numpy()
    )
    np.testing.assert_allclose(class_outputs["4"], expected, rtol=1e-4, atol=1e-5)


def test_initialization_as_the_original():
    head = make_head(num_filters=64)
    class_outputs, box_outputs = head(fpn_features(64, channels=64), training=False)
    prior_bias = -math.log((1 - 0.01) / 0.01)
    np.testing.assert_allclose(head._class_predict.bias, prior_bias, rtol=1e-6)
    np.testing.assert_array_equal(head._box_predict.bias, 0.0)
    assert abs(float(np.std(head._class_convs[0].kernel)) - 0.01) < 0.001
    assert float(np.std(head._class_predict.kernel)) < 1e-4
    # Every anchor starts with foreground probability ~0.01.
    probs = tf.sigmoid(class_outputs["3"]).numpy()
    np.testing.assert_allclose(probs, 0.01, atol=1e-3)
    assert float(np.abs(box_outputs["3"]).max()) < 1e-2


def test_separable_convolutions():
    head = make_head(use_separable_conv=True)
    class_outputs, _ = head(fpn_features())
    assert class_outputs["3"].shape[-1] == ANCHORS * NUM_CLASSES
    assert head._class_convs[0].depthwise_kernel.shape == (3, 3, FILTERS, 1)
    np.testing.assert_allclose(head._class_predict.bias, -math.log(99.0), rtol=1e-6)


def test_missing_level_is_a_clear_error():
    feats = fpn_features()
    del feats["6"]
    with pytest.raises(KeyError, match="level '6'"):
        make_head()(feats)


def test_rejects_bad_sizes():
    with pytest.raises(ValueError, match="num_classes"):
        make_head(num_classes=0)
    with pytest.raises(ValueError, match="max_level"):
        make_head(min_level=5, max_level=4)
