"""Faster / Mask R-CNN losses against NumPy loops over anchors, ROIs and pixels."""

import math

import numpy as np
import pytest
import tensorflow as tf

from detection.modeling.losses import maskrcnn_losses as losses

RNG = np.random.default_rng(0)


def huber_np(error, delta):
    error = abs(error)
    return 0.5 * error**2 if error <= delta else delta * (error - 0.5 * delta)


def sigmoid_ce_np(logit, label):
    p = 1.0 / (1.0 + math.exp(-logit))
    return -(label * math.log(p) + (1 - label) * math.log(1 - p))


def rpn_inputs(levels=(2, 3), batch=2, anchors=3):
    scores, score_targets, boxes, box_targets = {}, {}, {}, {}
    for level in levels:
        side = 16 // 2**level
        shape = (batch, side, side, anchors)
        scores[str(level)] = RNG.normal(size=shape).astype(np.float32)
        score_targets[str(level)] = RNG.integers(-1, 2, size=shape).astype(np.int32)
        boxes[str(level)] = RNG.normal(scale=0.3, size=shape[:3] + (anchors * 4,)).astype(
            np.float32
        )
        foreground = np.repeat(score_targets[str(level)] == 1, 4, axis=-1)
        targets = RNG.normal(scale=0.3, size=boxes[str(level)].shape) * foreground
        box_targets[str(level)] = targets.astype(np.float32)
    return scores, score_targets, boxes, box_targets


def test_rpn_score_loss_sums_sampled_anchors_over_batch_times_sample_size():
    scores, targets, _, _ = rpn_inputs()
    expected = 0.0
    for level in scores:
        total = sum(
            sigmoid_ce_np(s, t)
            for s, t in zip(scores[level].ravel(), targets[level].ravel())
            if t >= 0
        )
        expected += total / (2 * 256)
    got = losses.rpn_score_loss(scores, targets, rpn_batch_size_per_im=256)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_rpn_box_loss_is_a_mean_over_foreground_coordinates_per_level():
    _, _, boxes, targets = rpn_inputs()
    expected = 0.0
    for level in boxes:
        pairs = [(o, t) for o, t in zip(boxes[level].ravel(), targets[level].ravel()) if t != 0]
        expected += sum(huber_np(o - t, 1 / 9) for o, t in pairs) / (len(pairs) + 0.01)
    got = losses.rpn_box_loss(boxes, targets, 1 / 9)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="output levels"):
        losses.rpn_box_loss(boxes, {"2": targets["2"]}, 1 / 9)


def frcnn_inputs(batch=2, rois=6, classes=4):
    class_outputs = RNG.normal(size=(batch, rois, classes)).astype(np.float32)
    class_targets = RNG.integers(0, classes, size=(batch, rois)).astype(np.int32)
    box_outputs = RNG.normal(scale=0.5, size=(batch, rois, classes * 4)).astype(np.float32)
    box_targets = RNG.normal(scale=0.5, size=(batch, rois, 4)).astype(np.float32)
    box_targets[class_targets == 0] = 0.0
    valid = RNG.uniform(size=(batch, rois)) > 0.2
    return class_outputs, class_targets, box_outputs, box_targets, valid


def test_fast_rcnn_class_loss_is_the_mean_softmax_cross_entropy_of_valid_rois():
    logits, targets, _, _, valid = frcnn_inputs()
    terms = []
    for b in range(2):
        for n in range(6):
            row = logits[b, n].astype(np.float64)
            log_softmax = row - np.log(np.sum(np.exp(row)))
            if valid[b, n]:
                terms.append(-log_softmax[targets[b, n]])
    got = losses.fast_rcnn_class_loss(logits, targets, valid)
    assert float(got) == pytest.approx(np.mean(terms), rel=1e-5)
    every = losses.fast_rcnn_class_loss(logits, targets)
    expected_all = tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    )
    assert float(every) == pytest.approx(float(expected_all), rel=1e-6)


@pytest.mark.parametrize("class_agnostic", [False, True])
def test_fast_rcnn_box_loss_reads_the_groundtruth_class_box_of_foreground_rois(class_agnostic):
    _, targets, box_outputs, box_targets, valid = frcnn_inputs()
    if class_agnostic:
        box_outputs = box_outputs[..., :4]
    total, count = 0.0, 0
    for b in range(2):
        for n in range(6):
            if targets[b, n] > 0 and valid[b, n]:
                k = 0 if class_agnostic else targets[b, n]
                for j in range(4):
                    total += huber_np(box_outputs[b, n, 4 * k + j] - box_targets[b, n, j], 1.0)
                count += 4
    got = losses.fast_rcnn_box_loss(box_outputs, targets, box_targets, 1.0, class_agnostic, valid)
    assert float(got) == pytest.approx(total / (count + 0.01), rel=1e-5)


def test_mask_loss_averages_foreground_roi_pixels():
    logits = RNG.normal(size=(2, 3, 4, 4)).astype(np.float32)
    targets = (RNG.uniform(size=logits.shape) > 0.5).astype(np.float32)
    classes = np.array([[2, 0, 1], [0, 3, 3]], np.int32)
    valid = np.array([[True, True, True], [True, True, False]])
    terms = [
        sigmoid_ce_np(logits[b, k, i, j], targets[b, k, i, j])
        for b in range(2)
        for k in range(3)
        for i in range(4)
        for j in range(4)
        if classes[b, k] > 0 and valid[b, k]
    ]
    got = losses.mask_loss(logits, targets, classes, valid)
    assert float(got) == pytest.approx(sum(terms) / (len(terms) + 0.01), rel=1e-5)
    # No foreground ROI: zero, not NaN.
    assert float(losses.mask_loss(logits, targets, np.zeros_like(classes))) == 0.0


def test_total_loss_averages_cascade_stages():
    scores, score_targets, boxes, box_targets = rpn_inputs()
    stage_inputs = [frcnn_inputs() for _ in range(3)]
    stages = [
        dict(class_outputs=c, class_targets=t, box_outputs=bo, box_targets=bt, valid=v)
        for c, t, bo, bt, v in stage_inputs
    ]
    mask_logits = RNG.normal(size=(2, 3, 4, 4)).astype(np.float32)
    outputs = dict(
        rpn_score_outputs=scores,
        rpn_box_outputs=boxes,
        stages=stages,
        mask_outputs=mask_logits,
        mask_targets=np.ones_like(mask_logits),
        mask_class_targets=np.ones((2, 3), np.int32),
        mask_valid=np.ones((2, 3), bool),
    )
    labels = dict(rpn_score_targets=score_targets, rpn_box_targets=box_targets)
    result = losses.MaskRCNNLoss()(outputs, labels)
    class_mean = np.mean(
        [
            losses.fast_rcnn_class_loss(s["class_outputs"], s["class_targets"], s["valid"])
            for s in stages
        ]
    )
    assert float(result["fast_rcnn_class_loss"]) == pytest.approx(class_mean, rel=1e-6)
    parts = [k for k in result if k != "total_loss"]
    assert sorted(parts) == sorted(
        [
            "rpn_score_loss",
            "rpn_box_loss",
            "fast_rcnn_class_loss",
            "fast_rcnn_box_loss",
            "mask_loss",
        ]
    )
    assert float(result["total_loss"]) == pytest.approx(
        sum(float(result[k]) for k in parts), rel=1e-6
    )
    no_mask = losses.MaskRCNNLoss(include_mask=False)(outputs, labels)
    assert "mask_loss" not in no_mask
    with pytest.raises(ValueError, match="frcnn_box_loss.huber_loss_delta"):
        losses.MaskRCNNLoss(frcnn_huber_loss_delta=0.0)
