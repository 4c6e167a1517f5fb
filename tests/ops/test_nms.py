"""Tests of detection.ops.nms against a NumPy brute-force greedy NMS."""

import numpy as np
import pytest
import tensorflow as tf

from detection.ops import nms


def _np_iou(a, b):
    """IoU in float32 with the same operation order as box_iou (bit-exact)."""
    a = a.astype(np.float32)
    b = b.astype(np.float32)
    ih = np.maximum(np.minimum(a[2], b[2]) - np.maximum(a[0], b[0]), np.float32(0))
    iw = np.maximum(np.minimum(a[3], b[3]) - np.maximum(a[1], b[1]), np.float32(0))
    inter = ih * iw
    area_a = max(a[2] - a[0], np.float32(0)) * max(a[3] - a[1], np.float32(0))
    area_b = max(b[2] - b[0], np.float32(0)) * max(b[3] - b[1], np.float32(0))
    return inter / (area_a + area_b - inter) if inter > 0 else np.float32(0)


def _np_greedy_nms(boxes, scores, max_out, iou_threshold, score_threshold):
    """Textbook greedy NMS; returns kept indices in descending score order."""
    keep = []
    for i in np.argsort(-scores, kind="stable"):
        if scores[i] <= score_threshold or len(keep) == max_out:
            break
        if all(_np_iou(boxes[i], boxes[j]) <= iou_threshold for j in keep):
            keep.append(i)
    return keep


def _clustered_boxes(rng, shape, num_clusters=4, size=64):
    """Integer boxes around a few centers, so that many overlap."""
    centers = rng.integers(8, size - 8, size=(num_clusters, 2))
    which = rng.integers(0, num_clusters, size=shape)
    center = centers[which] + rng.integers(-4, 5, size=shape + (2,))
    half = rng.integers(1, 10, size=shape + (2,))
    return np.concatenate([center - half, center + half], axis=-1).astype(np.float32)


def _distinct_scores(rng, shape):
    """Scores in (0, 1) without ties, so the order is unambiguous."""
    n = int(np.prod(shape))
    return rng.permutation(np.linspace(0.01, 0.99, n)).reshape(shape).astype(np.float32)


@pytest.mark.parametrize("jit", [False, True])
def test_greedy_nms_indices_matches_reference(jit):
    rng = np.random.default_rng(0)
    boxes = _clustered_boxes(rng, (3, 60))
    scores = _distinct_scores(rng, (3, 60))
    boxes[1, 7] = -1.0  # padding box: zero area, overlaps nothing
    boxes[2, :30] = boxes[2, 30:]  # exact duplicates: IoU 1
    fn = tf.function(nms.greedy_nms_indices, jit_compile=jit)
    for max_out, iou_thr, score_thr in [(10, 0.5, 0.2), (60, 0.3, 0.0), (5, 0.7, 0.9)]:
        indices, num_valid = fn(boxes, scores, max_out, iou_thr, score_thr)
        assert indices.shape == (3, max_out) and num_valid.shape == (3,)
        for b in range(3):
            want = _np_greedy_nms(boxes[b], scores[b], max_out, iou_thr, score_thr)
            assert num_valid[b] == len(want)
            np.testing.assert_array_equal(indices[b, : len(want)], want)
            np.testing.assert_array_equal(indices[b, len(want) :], 0)


def test_greedy_nms_agrees_with_tf_image_nms():
    rng = np.random.default_rng(1)
    boxes = _clustered_boxes(rng, (200,), num_clusters=6)
    scores = _distinct_scores(rng, (200,))
    indices, num_valid = nms.greedy_nms_indices(boxes, scores, 50, 0.45, 0.1)
    want = tf.image.non_max_suppression(
        boxes, scores, 50, iou_threshold=0.45, score_threshold=0.1
    ).numpy()
    assert num_valid == len(want)
    np.testing.assert_array_equal(indices[:num_valid], want)


def test_iou_exactly_at_threshold_is_kept_and_score_at_threshold_dropped():
    boxes = np.float32([[0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30]])
    scores = np.float32([0.9, 0.8, 0.5])
    indices, num_valid = nms.greedy_nms_indices(boxes, scores, 3, 0.5, 0.5)
    assert num_valid == 2  # IoU 0.5 is not > 0.5; score 0.5 is not > 0.5
    np.testing.assert_array_equal(indices, [0, 1, 0])
    _, num_valid = nms.greedy_nms_indices(boxes, scores, 3, 0.49, 0.0)
    assert num_valid == 2


def test_single_class_nms_with_pre_nms_top_k():
    rng = np.random.default_rng(2)
    boxes = _clustered_boxes(rng, (2, 80))
    scores = _distinct_scores(rng, (2, 80))
    fn = tf.function(nms.single_class_nms, jit_compile=True)
    num_valid, got_boxes, got_scores = fn(boxes, scores, 20, 0.5, 0.0, 30)
    assert got_boxes.shape == (2, 20, 4) and got_scores.shape == (2, 20)
    for b in range(2):
        top = np.argsort(-scores[b], kind="stable")[:30]
        keep = top[_np_greedy_nms(boxes[b, top], scores[b, top], 20, 0.5, 0.0)]
        n = len(keep)
        assert num_valid[b] == n
        np.testing.assert_array_equal(got_boxes[b, :n], boxes[b, keep])
        np.testing.assert_array_equal(got_scores[b, :n], scores[b, keep])
        np.testing.assert_array_equal(got_boxes[b, n:], 0)
        np.testing.assert_array_equal(got_scores[b, n:], 0)


def _np_multiclass_nms(boxes, scores, max_total, iou_thr, score_thr, pre_nms, class_offset):
    """Per image: per-class top-k + greedy NMS, then merge by score."""
    out = []
    for b in range(scores.shape[0]):
        found = []  # (score, class, box)
        for c in range(scores.shape[2]):
            class_boxes = boxes[b] if boxes.ndim == 3 else boxes[b, :, min(c, boxes.shape[2] - 1)]
            top = np.argsort(-scores[b, :, c], kind="stable")[:pre_nms]
            kept = top[
                _np_greedy_nms(class_boxes[top], scores[b, top, c], max_total, iou_thr, score_thr)
            ]
            found += [(scores[b, i, c], c + class_offset, class_boxes[i]) for i in kept]
        order = sorted(range(len(found)), key=lambda i: -found[i][0])
        out.append([found[i] for i in order[:max_total]])
    return out


@pytest.mark.parametrize("per_class_boxes", [False, True])
@pytest.mark.parametrize("jit", [False, True])
def test_multiclass_nms_matches_reference(per_class_boxes, jit):
    rng = np.random.default_rng(3)
    num_classes = 3
    if per_class_boxes:
        boxes = _clustered_boxes(rng, (2, 70, num_classes))
    else:
        boxes = _clustered_boxes(rng, (2, 70))
    scores = _distinct_scores(rng, (2, 70, num_classes))
    fn = tf.function(nms.multiclass_nms, jit_compile=jit)
    for max_total, iou_thr, score_thr, pre_nms in [
        (15, 0.5, 0.05, 40),
        (100, 0.6, 0.3, 5000),
        (4, 0.3, 0.97, 10),
    ]:
        got = fn(boxes, scores, max_total, iou_thr, score_thr, pre_nms, class_offset=1)
        want = _np_multiclass_nms(
            boxes, scores, max_total, iou_thr, score_thr, pre_nms, class_offset=1
        )
        assert got["detection_boxes"].shape == (2, max_total, 4)
        assert got["detection_classes"].dtype == tf.int32
        for b in range(2):
            n = len(want[b])
            assert got["num_detections"][b] == n
            np.testing.assert_array_equal(got["detection_scores"][b, :n], [w[0] for w in want[b]])
            np.testing.assert_array_equal(got["detection_classes"][b, :n], [w[1] for w in want[b]])
            np.testing.assert_array_equal(
                got["detection_boxes"][b, :n], np.reshape([w[2] for w in want[b]], (n, 4))
            )
            for key in ("detection_scores", "detection_classes", "detection_boxes"):
                np.testing.assert_array_equal(got[key][b, n:], 0)


def test_multiclass_nms_nothing_above_threshold():
    rng = np.random.default_rng(4)
    boxes = _clustered_boxes(rng, (2, 10))
    scores = _distinct_scores(rng, (2, 10, 2)) * 0.5
    got = nms.multiclass_nms(boxes, scores, 5, 0.5, 0.6, 100)
    np.testing.assert_array_equal(got["num_detections"], [0, 0])
    np.testing.assert_array_equal(got["detection_boxes"], np.zeros((2, 5, 4)))


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="scores shape"):
        nms.greedy_nms_indices(
            np.zeros((2, 5, 4), np.float32), np.zeros((2, 4), np.float32), 3, 0.5
        )
    with pytest.raises(ValueError, match="1 or 3 classes"):
        nms.multiclass_nms(
            np.zeros((1, 5, 2, 4), np.float32), np.zeros((1, 5, 3), np.float32), 3, 0.5
        )
