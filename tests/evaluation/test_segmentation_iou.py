"""Mean IoU from in-graph confusion matrices equals a per-class NumPy count over the pixels."""

import numpy as np
import pytest
import tensorflow as tf

from detection.evaluation.segmentation_iou import MeanIoU, confusion_matrices, iou_metrics

IGNORE = 255


def _reference(labels, predictions, num_classes, ignore_label):
    """Per-class IoU by boolean masks over all labelled pixels (no confusion matrix)."""
    keep = (labels != ignore_label) & (labels >= 0) & (labels < num_classes)
    labels, predictions = labels[keep], predictions[keep]
    ious, per_class = [], {}
    for c in range(num_classes):
        truth, predicted = labels == c, predictions == c
        union = np.sum(truth | predicted)
        iou = np.sum(truth & predicted) / union if union else None
        if iou is not None:
            ious.append(iou)
        per_class[c] = iou if truth.any() else -1.0
    return float(np.mean(ious)), float(np.mean(labels == predictions)), per_class


def test_confusion_matrices_count_pixels_per_image():
    labels = np.array([[[0, 1], [2, IGNORE]], [[1, 1], [-1, 0]]])
    predictions = np.array([[[0, 2], [2, 1]], [[1, 0], [2, 0]]])
    matrices = confusion_matrices(labels, predictions, 3, IGNORE).numpy()
    expected = np.zeros((2, 3, 3), int)
    expected[0, 0, 0] = expected[0, 1, 2] = expected[0, 2, 2] = 1
    expected[1, 1, 1] = expected[1, 1, 0] = expected[1, 0, 0] = 1
    np.testing.assert_array_equal(matrices, expected)


def test_streamed_mean_iou_equals_the_reference():
    rng = np.random.default_rng(0)
    num_classes = 4
    labels = rng.integers(0, num_classes, (6, 16, 20))
    labels[rng.uniform(size=labels.shape) < 0.1] = IGNORE
    # Predictions agree with the labels most of the time; class 3 is never predicted.
    predictions = np.where(
        rng.uniform(size=labels.shape) < 0.7, labels, rng.integers(0, 3, labels.shape)
    )
    predictions = np.clip(predictions, 0, 2)
    evaluator = MeanIoU(num_classes)
    compute = tf.function(
        lambda l, p: confusion_matrices(l, p, num_classes, IGNORE), jit_compile=True
    )
    for start in (0, 4):
        batch = slice(start, start + 4)
        batch_labels = labels[batch]
        batch_predictions = predictions[batch]
        valid = np.ones(len(batch_labels), bool)
        if len(batch_labels) < 4:  # pad the last batch as the input pipeline does
            pad = 4 - len(batch_labels)
            batch_labels = np.concatenate([batch_labels, -np.ones((pad, 16, 20), int)])
            batch_predictions = np.concatenate([batch_predictions, np.zeros((pad, 16, 20), int)])
            valid = np.arange(4) < 4 - pad
        matrices = compute(tf.constant(batch_labels), tf.constant(batch_predictions)).numpy()
        evaluator.update({"confusion_matrix": matrices, "valid": valid})
    metrics = evaluator.evaluate()
    miou, accuracy, per_class = _reference(labels, predictions, num_classes, IGNORE)
    assert metrics["miou"] == pytest.approx(miou)
    assert metrics["pixel_accuracy"] == pytest.approx(accuracy)
    for c in range(num_classes):
        assert metrics[f"iou_class_{c}"] == pytest.approx(per_class[c]), c
    assert metrics["iou_class_3"] == 0.0  # present in the groundtruth, never predicted


def test_hand_made_matrix():
    # Class 2 is predicted but absent from the groundtruth: IoU 0 in the mean, -1 per class.
    confusion = np.array([[3, 1, 0], [0, 2, 2], [0, 0, 0]])
    metrics = iou_metrics(confusion)
    assert metrics["iou_class_0"] == pytest.approx(3 / 4)
    assert metrics["iou_class_1"] == pytest.approx(2 / 5)
    assert metrics["iou_class_2"] == -1.0
    assert metrics["miou"] == pytest.approx((3 / 4 + 2 / 5 + 0.0) / 3)
    assert metrics["pixel_accuracy"] == pytest.approx(5 / 8)


def test_no_labelled_pixel_is_an_error():
    evaluator = MeanIoU(2)
    evaluator.update({"confusion_matrix": np.ones((1, 2, 2), int), "valid": np.array([False])})
    with pytest.raises(ValueError, match="no labelled pixel"):
        evaluator.evaluate()
