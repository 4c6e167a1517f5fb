"""Focal loss and RetinaNet losses against NumPy brute force."""

import numpy as np
import pytest
import tensorflow as tf

from detection.modeling.losses import focal_loss, retinanet_losses

NUM_CLASSES = 3
ANCHORS = 2


def focal_np(logits, targets, alpha, gamma):
    """The paper's definition, element by element, in float64."""
    logits = np.asarray(logits, np.float64)
    out = np.zeros_like(logits)
    for idx in np.ndindex(logits.shape):
        p = 1.0 / (1.0 + np.exp(-logits[idx]))
        if targets[idx] == 1.0:
            pt, a = p, alpha
        else:
            pt, a = 1.0 - p, 1.0 - alpha
        out[idx] = -a * (1.0 - pt) ** gamma * np.log(pt)
    return out


@pytest.mark.parametrize("alpha,gamma", [(0.25, 1.5), (0.25, 2.0), (0.5, 0.0), (0.75, 0.5)])
def test_focal_loss_matches_definition(alpha, gamma):
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=4.0, size=(2, 3, 3, 6)).astype(np.float32)
    targets = (rng.uniform(size=logits.shape) < 0.3).astype(np.float32)
    got = focal_loss.sigmoid_focal_loss(logits, targets, alpha, gamma)
    np.testing.assert_allclose(got, focal_np(logits, targets, alpha, gamma), rtol=1e-5, atol=1e-6)


def test_focal_loss_is_finite_for_extreme_logits():
    logits = tf.constant([-200.0, -30.0, 30.0, 200.0] * 2)
    targets = tf.constant([0.0] * 4 + [1.0] * 4)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = focal_loss.sigmoid_focal_loss(logits, targets, 0.25, 0.5)
    grad = tape.gradient(loss, logits)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    # Confident and right costs ~0; confident and wrong costs ~alpha_t * |x|.
    np.testing.assert_allclose(loss.numpy()[[0, 7]], 0.0, atol=1e-6)
    np.testing.assert_allclose(loss.numpy()[3], 0.75 * 200.0, rtol=1e-5)
    np.testing.assert_allclose(loss.numpy()[4], 0.25 * 200.0, rtol=1e-5)


def _tiny_example(seed=0):
    """Two levels, batch 2, 2 anchors, 3 classes; every target kind."""
    rng = np.random.default_rng(seed)
    shapes = {"3": (2, 4, 4), "4": (2, 2, 2)}
    cls_outputs, box_outputs, cls_targets, box_targets = {}, {}, {}, {}
    for level, (b, h, w) in shapes.items():
        cls_outputs[level] = rng.normal(scale=2.0, size=(b, h, w, ANCHORS * NUM_CLASSES)).astype(
            np.float32
        )
        box_outputs[level] = rng.normal(scale=0.2, size=(b, h, w, ANCHORS * 4)).astype(np.float32)
        # -2 ignored, -1 negative, 1..2 matched classes (0 never matched).
        targets = rng.choice([-2, -1, -1, -1, 1, 2], size=(b, h, w, ANCHORS))
        cls_targets[level] = targets.astype(np.int32)
        boxes = rng.normal(scale=0.2, size=(b, h, w, ANCHORS, 4))
        boxes[targets <= 0] = 0.0
        box_targets[level] = boxes.reshape(b, h, w, ANCHORS * 4).astype(np.float32)
    num_positives = np.array(
        [sum((cls_targets[level][i] > 0).sum() for level in shapes) for i in range(2)], np.float32
    )
    return cls_outputs, box_outputs, cls_targets, box_targets, num_positives


def class_loss_np(cls_outputs, cls_targets, num_positives, alpha, gamma):
    total = 0.0
    for level, targets in cls_targets.items():
        logits = cls_outputs[level]
        for idx in np.ndindex(targets.shape):
            label = targets[idx]
            if label == -2:
                continue
            b, i, j, a = idx
            for k in range(NUM_CLASSES):
                x = logits[b, i, j, a * NUM_CLASSES + k]
                z = 1.0 if label == k else 0.0
                total += focal_np(np.array([x]), np.array([z]), alpha, gamma)[0]
    return total / (num_positives.sum() + 1.0)


def huber_np(e, delta):
    e = abs(e)
    return 0.5 * e * e if e <= delta else delta * (e - 0.5 * delta)


def box_loss_np(box_outputs, box_targets, num_positives, delta):
    total = 0.0
    for level, targets in box_targets.items():
        for idx in np.ndindex(targets.shape):
            if targets[idx] != 0.0:
                total += huber_np(box_outputs[level][idx] - targets[idx], delta)
    return total / ((num_positives.sum() + 1.0) * 4.0)


def test_class_loss_normalization_with_ignored_and_negative_anchors():
    cls_outputs, _, cls_targets, _, num_positives = _tiny_example()
    assert {-2, -1, 1, 2} <= set(np.unique(cls_targets["3"]))
    loss = retinanet_losses.RetinaNetClassLoss(NUM_CLASSES, 0.25, 1.5)(
        cls_outputs, cls_targets, num_positives
    )
    expected = class_loss_np(cls_outputs, cls_targets, num_positives, 0.25, 1.5)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_ignored_anchors_do_not_contribute():
    cls_outputs, _, cls_targets, _, num_positives = _tiny_example()
    loss_fn = retinanet_losses.RetinaNetClassLoss(NUM_CLASSES, 0.25, 1.5)
    base = loss_fn(cls_outputs, cls_targets, num_positives)
    changed = {k: v.copy() for k, v in cls_outputs.items()}
    ignored = np.repeat(cls_targets["3"] == -2, NUM_CLASSES, axis=-1)
    changed["3"][ignored] = 50.0
    np.testing.assert_allclose(loss_fn(changed, cls_targets, num_positives), base, rtol=1e-6)


def test_box_loss_normalization_and_huber_regimes():
    _, box_outputs, _, box_targets, num_positives = _tiny_example(1)
    errors = np.abs(box_outputs["3"] - box_targets["3"])[box_targets["3"] != 0]
    assert (errors < 0.1).any() and (errors > 0.1).any()
    loss = retinanet_losses.RetinaNetBoxLoss(0.1)(box_outputs, box_targets, num_positives)
    np.testing.assert_allclose(
        loss, box_loss_np(box_outputs, box_targets, num_positives, 0.1), rtol=1e-5
    )


def test_total_loss_and_explicit_normalizer():
    cls_outputs, box_outputs, cls_targets, box_targets, num_pos = _tiny_example(2)
    loss_fn = retinanet_losses.RetinaNetLoss(
        NUM_CLASSES,
        focal_loss_alpha=0.25,
        focal_loss_gamma=1.5,
        huber_loss_delta=0.1,
        box_loss_weight=50.0,
    )
    losses = loss_fn(
        {"class_outputs": cls_outputs, "box_outputs": box_outputs},
        {"cls_targets": cls_targets, "box_targets": box_targets, "num_positives": num_pos},
    )
    cls = class_loss_np(cls_outputs, cls_targets, num_pos, 0.25, 1.5)
    box = box_loss_np(box_outputs, box_targets, num_pos, 0.1)
    np.testing.assert_allclose(losses["cls_loss"], cls, rtol=1e-5)
    np.testing.assert_allclose(losses["box_loss"], box, rtol=1e-5)
    np.testing.assert_allclose(losses["total_loss"], cls + 50.0 * box, rtol=1e-5)
    np.testing.assert_allclose(losses["normalizer"], num_pos.sum() + 1.0)
    # An explicit normalizer replaces sum(num_positives) + 1.
    half = retinanet_losses.RetinaNetClassLoss(NUM_CLASSES, 0.25, 1.5)(
        cls_outputs, cls_targets, num_pos, normalizer=2.0 * (num_pos.sum() + 1.0)
    )
    np.testing.assert_allclose(half, cls / 2.0, rtol=1e-5)


def test_moving_average_normalizer():
    cls_outputs, box_outputs, cls_targets, box_targets, _ = _tiny_example(3)
    outputs = {"class_outputs": cls_outputs, "box_outputs": box_outputs}
    loss_fn = retinanet_losses.RetinaNetLoss(NUM_CLASSES, normalizer_momentum=0.9)
    ema = None
    for step, positives in enumerate(([3.0, 5.0], [0.0, 1.0], [10.0, 30.0])):
        labels = {
            "cls_targets": cls_targets,
            "box_targets": box_targets,
            "num_positives": np.array(positives, np.float32),
        }
        current = sum(positives) + 1.0
        ema = current if step == 0 else 0.9 * ema + 0.1 * current
        losses = loss_fn(outputs, labels, training=True)
        np.testing.assert_allclose(losses["normalizer"], ema, rtol=1e-6)
        np.testing.assert_allclose(loss_fn.normalizer.moving_normalizer.numpy(), ema, rtol=1e-6)
        plain = retinanet_losses.RetinaNetClassLoss(NUM_CLASSES, 0.25, 1.5)(
            cls_outputs, cls_targets, labels["num_positives"]
        )
        np.testing.assert_allclose(losses["cls_loss"], plain * current / ema, rtol=1e-5)
    # Evaluation uses the batch's own normalizer and leaves the average.
    losses = loss_fn(outputs, labels, training=False)
    np.testing.assert_allclose(losses["normalizer"], 41.0)
    np.testing.assert_allclose(loss_fn.normalizer.moving_normalizer.numpy(), ema, rtol=1e-6)


def test_moving_average_normalizer_updates_inside_tf_function():
    layer = retinanet_losses.MovingAverageNormalizer(0.5)
    step = tf.function(lambda x: layer(x, training=True), jit_compile=True)
    values = [step(tf.constant(v)).numpy() for v in (4.0, 8.0, 2.0)]
    np.testing.assert_allclose(values, [4.0, 6.0, 4.0])


def test_errors_name_the_problem():
    cls_outputs, _, cls_targets, _, num_pos = _tiny_example()
    with pytest.raises(ValueError, match="anchors .2. \\* num_classes .4."):
        retinanet_losses.RetinaNetClassLoss(4)(cls_outputs, cls_targets, num_pos)
    del cls_targets["4"]
    with pytest.raises(ValueError, match="levels"):
        retinanet_losses.RetinaNetClassLoss(NUM_CLASSES)(cls_outputs, cls_targets, num_pos)
    with pytest.raises(KeyError, match="num_positives"):
        retinanet_losses.RetinaNetLoss(NUM_CLASSES)(
            {"class_outputs": {}, "box_outputs": {}}, {"cls_targets": {}, "box_targets": {}}
        )
    with pytest.raises(ValueError, match="normalizer_momentum"):
        retinanet_losses.RetinaNetLoss(NUM_CLASSES, normalizer_momentum=1.0)
    with pytest.raises(ValueError, match="huber_loss_delta"):
        retinanet_losses.RetinaNetBoxLoss(0.0)
