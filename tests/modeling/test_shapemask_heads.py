"""ShapeMask heads and losses: the prior head's mixing of priors against NumPy, its box-masked
pooling, class selection, the fine head's instance embedding, and the losses against NumPy."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from detection.modeling.heads.coarse_mask_head import CoarseMaskHead
from detection.modeling.heads.fine_mask_head import FineMaskHead
from detection.modeling.heads.shape_prior_head import ShapePriorHead
from detection.modeling.layers.mask_decoder import select_class
from detection.modeling.losses import shapemask_losses

S = 8  # mask_crop_size
C = 6  # num_downsample_channels
NUM_CLASSES = 3
K = 4  # clusters


def _features(rng, batch=2, channels=5):
    """A P3-P4 pyramid of a 64 x 64 input."""
    return {
        "3": tf.constant(rng.normal(size=(batch, 8, 8, channels)), tf.float32),
        "4": tf.constant(rng.normal(size=(batch, 4, 4, channels)), tf.float32),
    }


def _boxes():
    boxes = np.float32([[[8, 8, 40, 32], [20, 30, 52, 60]], [[0, 0, 16, 16], [30, 10, 50, 50]]])
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2
    half = (boxes[..., 2:] - boxes[..., :2]) * 1.25 / 2
    outer = np.clip(np.concatenate([centre - half, centre + half], -1), 0, 64)
    return boxes, outer


def _np_resample(mask, box, target, size):
    """Per-cell bilinear sample of `mask` (its cells tile `box`, 0 outside) at the cell centres
    of a size x size grid over `target`."""
    cells = mask.shape[0]
    out = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            y = target[0] + (i + 0.5) * (target[2] - target[0]) / size
            x = target[1] + (j + 0.5) * (target[3] - target[1]) / size
            u = (y - box[0]) / (box[2] - box[0]) * cells - 0.5
            v = (x - box[1]) / (box[3] - box[1]) * cells - 0.5
            u0, v0 = math.floor(u), math.floor(v)
            for r, wr in ((u0, 1 - (u - u0)), (u0 + 1, u - u0)):
                for c, wc in ((v0, 1 - (v - v0)), (v0 + 1, v - v0)):
                    if 0 <= r < cells and 0 <= c < cells:
                        out[i, j] += wr * wc * mask[r, c]
    return out


def _prior_head(priors, use_category_for_mask=True):
    head = ShapePriorHead(
        NUM_CLASSES,
        C,
        S,
        use_category_for_mask=use_category_for_mask,
        shape_priors=priors,
        min_level=3,
        max_level=4,
    )
    return head


def test_prior_mask_is_the_chosen_prior_moved_into_the_outer_box():
    rng = np.random.default_rng(0)
    priors = rng.uniform(size=(NUM_CLASSES, K, S, S)).astype(np.float32)
    head = _prior_head(priors)
    features = _features(rng)
    boxes, outer = _boxes()
    classes = np.int32([[1, 2], [2, 0]])
    head(features, boxes, outer, classes)
    # A zero kernel and a bias that favours cluster (c + 1) % K of class c by a wide margin:
    # the softmax weights become one-hot, so each prior mask is one known prior.
    kernel, bias = head._shape_classifier.weights
    kernel.assign(np.zeros(kernel.shape, np.float32))
    chosen = {c: (c + 1) % K for c in range(NUM_CLASSES)}
    values = np.zeros(bias.shape, np.float32)
    for c, k in chosen.items():
        values[c * K + k] = 30.0
    bias.assign(values)
    instance_features, prior_masks = head(features, boxes, outer, classes)
    assert instance_features.shape == (2, 2, S, S, C)
    assert prior_masks.shape == (2, 2, S, S) and prior_masks.dtype == tf.float32
    for b in range(2):
        for n in range(2):
            c = classes[b, n]
            want = _np_resample(priors[c, chosen[c]], boxes[b, n], outer[b, n], S)
            np.testing.assert_allclose(prior_masks[b, n], want, atol=1e-5)


def test_prior_weights_pool_only_inside_the_tight_box():
    rng = np.random.default_rng(1)
    head = _prior_head(rng.uniform(size=(NUM_CLASSES, K, S, S)))
    features = rng.normal(size=(1, 1, S, S, C)).astype(np.float32)
    inside = np.zeros((1, 1, S, S), np.float32)
    inside[..., 2:6, 2:6] = 1.0
    head(_features(rng, batch=1), *[b[:1, :1] for b in _boxes()], np.int32([[1]]))
    kernel, bias = head._shape_classifier.weights
    kernel.assign(rng.normal(size=kernel.shape).astype(np.float32))
    weights = head.prior_weights(features, inside, np.int32([[1]])).numpy()
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)
    pooled = (features[0, 0] * inside[0, 0, ..., None]).mean(axis=(0, 1))
    logits = pooled @ kernel.numpy() + bias.numpy()
    want = np.exp(logits[K : 2 * K] - logits[K : 2 * K].max())
    np.testing.assert_allclose(weights[0, 0], want / want.sum(), rtol=1e-5)
    # Features outside the box do not matter.
    outside = features + 5.0 * (1.0 - inside)[..., None]
    np.testing.assert_allclose(
        head.prior_weights(outside, inside, np.int32([[1]])), weights, rtol=1e-5
    )


def test_class_agnostic_priors_serve_every_class():
    rng = np.random.default_rng(2)
    priors = rng.uniform(size=(1, K, S, S)).astype(np.float32)
    head = _prior_head(priors, use_category_for_mask=False)
    boxes, outer = _boxes()
    features = _features(rng)
    _, a = head(features, boxes, outer, np.int32([[1, 2], [2, 0]]))
    _, b = head(features, boxes, outer, np.int32([[0, 0], [1, 1]]))
    np.testing.assert_allclose(a, b)  # the class does not matter
    assert float(tf.reduce_max(a)) > 0


def test_prior_head_rejects_priors_of_another_shape():
    with pytest.raises(
        ValueError, match=r"shape priors must be \[3, num_clusters, 8, 8\].*\[3, 4, 16, 16\]"
    ):
        _prior_head(np.zeros((NUM_CLASSES, K, 16, 16)))
    with pytest.raises(ValueError, match=r"must be \[1, num_clusters"):
        _prior_head(np.zeros((NUM_CLASSES, K, S, S)), use_category_for_mask=False)
    # Without a file: one all-zero prior, so the prior mask is 0.
    head = _prior_head(None)
    assert head.num_clusters == 1
    boxes, outer = _boxes()
    _, prior_masks = head(
        _features(np.random.default_rng(0)), boxes, outer, np.ones((2, 2), np.int32)
    )
    assert not np.any(prior_masks.numpy())


def test_select_class_matches_take_along_axis():
    rng = np.random.default_rng(3)
    values = rng.normal(size=(2, 3, 4, 5, NUM_CLASSES)).astype(np.float32)
    classes = rng.integers(0, NUM_CLASSES, size=(2, 3))
    want = np.take_along_axis(values, classes[:, :, None, None, None], axis=-1)[..., 0]
    np.testing.assert_allclose(select_class(values, classes, NUM_CLASSES), want)


def test_coarse_head_shapes_and_class_selection():
    rng = np.random.default_rng(4)
    keras.utils.set_random_seed(0)
    head = CoarseMaskHead(NUM_CLASSES, C, num_convs=2)
    features = tf.constant(rng.normal(size=(2, 3, S, S, C)), tf.float32)
    priors = tf.constant(rng.uniform(size=(2, 3, S, S)), tf.float32)
    logits = head(features, priors, np.int32([[0, 1, 2], [2, 2, 1]]))
    assert logits.shape == (2, 3, S, S) and logits.dtype == tf.float32
    # Untrained: every pixel near the 0.01 foreground prior of the prediction bias.
    np.testing.assert_allclose(tf.sigmoid(logits), 0.01, atol=0.01)
    # The same instance with another class reads another channel.
    other = head(features, priors, np.int32([[1, 1, 2], [2, 2, 1]]))
    assert not np.allclose(logits[0, 0], other[0, 0])
    np.testing.assert_allclose(logits[0, 1:], other[0, 1:], atol=1e-6)


def test_fine_head_subtracts_the_foreground_mean_embedding():
    keras.utils.set_random_seed(0)
    head = FineMaskHead(NUM_CLASSES, C, num_convs=1, upsample_factor=2)
    classes = np.int32([[1]])
    coarse = np.full((1, 1, S, S), -5.0, np.float32)
    coarse[..., 2:6, 2:6] = 5.0  # a foreground square
    constant = np.ones((1, 1, S, S, C), np.float32)
    a = head(constant * 0.5, coarse, classes)
    b = head(constant * 3.0, coarse, classes)
    assert a.shape == (1, 1, 2 * S, 2 * S)
    # Features constant over the crop equal their foreground mean: subtracted, they vanish.
    np.testing.assert_allclose(a, b, atol=1e-5)
    # Without foreground the embedding is 0 and the features pass unchanged.
    background = np.full((1, 1, S, S), -5.0, np.float32)
    assert not np.allclose(
        head(constant * 0.5, background, classes), head(constant * 3.0, background, classes)
    )


def _bce(logits, targets):
    return np.maximum(logits, 0) - logits * targets + np.log1p(np.exp(-np.abs(logits)))


def test_losses_match_numpy_over_valid_instances():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)
    priors = rng.uniform(size=(2, 3, 4, 4)).astype(np.float32)
    targets = (rng.uniform(size=(2, 3, 4, 4)) > 0.5).astype(np.float32)
    valid = np.int32([[1, 0, 1], [1, 1, 0]])
    v = valid[..., None, None].astype(np.float64)
    foreground = np.sum(targets * v)
    np.testing.assert_allclose(
        shapemask_losses.mask_loss(logits, targets, valid),
        np.sum(_bce(logits, targets) * v) / (foreground + 0.001),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        shapemask_losses.shape_prior_loss(priors, targets, valid),
        0.5 * np.sum(((targets - priors) * v) ** 2) / (foreground + 0.001),
        rtol=1e-5,
    )
    # Invalid instances do not count, whatever their values.
    flipped = targets.copy()
    flipped[0, 1] = 1 - flipped[0, 1]
    assert float(shapemask_losses.mask_loss(logits, flipped, valid)) == pytest.approx(
        float(shapemask_losses.mask_loss(logits, targets, valid))
    )
    assert float(shapemask_losses.mask_loss(logits, targets, np.zeros_like(valid))) == 0.0


def test_weighted_total():
    rng = np.random.default_rng(6)
    outputs = {
        "prior_masks": rng.uniform(size=(1, 2, 4, 4)),
        "coarse_mask_logits": rng.normal(size=(1, 2, 4, 4)),
        "fine_mask_logits": rng.normal(size=(1, 2, 8, 8)),
    }
    labels = {
        "mask_targets": (rng.uniform(size=(1, 2, 4, 4)) > 0.5).astype(np.float32),
        "fine_mask_targets": (rng.uniform(size=(1, 2, 8, 8)) > 0.5).astype(np.float32),
        "mask_is_valid": np.ones((1, 2), np.int32),
    }
    losses = shapemask_losses.ShapeMaskLoss(0.1, 2.0, 3.0)(outputs, labels)
    total = (
        0.1 * losses["shape_prior_loss"]
        + 2.0 * losses["coarse_mask_loss"]
        + 3.0 * losses["fine_mask_loss"]
    )
    assert float(losses["total_loss"]) == pytest.approx(float(total))
    with pytest.raises(ValueError, match="shapemask_loss.fine_mask_loss_weight"):
        shapemask_losses.ShapeMaskLoss(fine_mask_loss_weight=-1.0)
    with pytest.raises(ValueError, match="differ"):
        shapemask_losses.mask_loss(np.zeros((1, 2, 4, 4)), np.zeros((1, 2, 8, 8)), np.ones((1, 2)))
