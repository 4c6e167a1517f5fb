"""Fast R-CNN detection generator against a NumPy pipeline (softmax, decode, clip, NMS)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from detection.ops import postprocess

_NUM_CLASSES = 4  # background + 3
_NUM_ROIS = 40
_IMAGE_SHAPE = np.float32([[64, 64], [48, 56]])


def _inputs(seed, agnostic=False):
    """ROIs clustered around a few centres (so NMS has work), logits and deltas."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(8, 56, size=(2, 4, 2))
    pick = rng.integers(0, 4, size=(2, _NUM_ROIS))
    yx = np.take_along_axis(centres, pick[..., None], axis=1) + rng.normal(0, 2, (2, _NUM_ROIS, 2))
    half = rng.uniform(4, 12, size=(2, _NUM_ROIS, 2))
    rois = np.concatenate([yx - half, yx + half], -1).astype(np.float32)
    rois[:, -3:] = 0.0  # zero padding of the proposals
    logits = rng.normal(scale=2.0, size=(2, _NUM_ROIS, _NUM_CLASSES)).astype(np.float32)
    width = 4 if agnostic else 4 * _NUM_CLASSES
    deltas = rng.normal(scale=0.5, size=(2, _NUM_ROIS, width)).astype(np.float32)
    return deltas, logits, rois


def _np_iou(a, b):
    ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iw = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ih * iw
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if inter > 0 else 0.0


def _np_decode(delta, roi, weights):
    h, w = roi[2] - roi[0], roi[3] - roi[1]
    yc = roi[0] + h / 2 + delta[0] / weights[0] * h
    xc = roi[1] + w / 2 + delta[1] / weights[1] * w
    bh = math.exp(min(delta[2] / weights[2], math.log(1000 / 16))) * h
    bw = math.exp(min(delta[3] / weights[3], math.log(1000 / 16))) * w
    return np.array([yc - bh / 2, xc - bw / 2, yc + bh / 2, xc + bw / 2])


def _np_detections(deltas, logits, rois, weights, max_total, iou_thr, score_thr, pre_nms, nms=True):
    results = []
    for b in range(2):
        h, w = _IMAGE_SHAPE[b]
        e = np.exp(logits[b].astype(np.float64) - logits[b].max(-1, keepdims=True))
        probs = e / e.sum(-1, keepdims=True)
        found = []
        for c in range(1, _NUM_CLASSES):
            column = 0 if deltas.shape[-1] == 4 else c
            boxes = [
                np.clip(
                    _np_decode(deltas[b, r, 4 * column : 4 * column + 4], rois[b, r], weights),
                    0,
                    [h, w, h, w],
                )
                for r in range(_NUM_ROIS)
            ]
            scores = [
                probs[r, c] if rois[b, r, 2] > rois[b, r, 0] else 0.0 for r in range(_NUM_ROIS)
            ]
            order = np.argsort(-np.array(scores), kind="stable")[:pre_nms]
            keep = []
            for r in order:
                if scores[r] <= score_thr or len(keep) == max_total:
                    break
                if not nms or all(_np_iou(boxes[r], boxes[k]) <= iou_thr for k in keep):
                    keep.append(r)
            found += [(scores[r], c, boxes[r]) for r in keep]
        found.sort(key=lambda f: -f[0])
        results.append(found[:max_total])
    return results


def _check(got, want, max_total):
    assert got["detection_boxes"].shape == (2, max_total, 4)
    assert got["detection_classes"].dtype == tf.int32
    for b in range(2):
        n = len(want[b])
        assert got["num_detections"][b] == n
        np.testing.assert_allclose(
            got["detection_scores"][b, :n], [f[0] for f in want[b]], atol=1e-6
        )
        np.testing.assert_array_equal(got["detection_classes"][b, :n], [f[1] for f in want[b]])
        np.testing.assert_allclose(
            got["detection_boxes"][b, :n], np.reshape([f[2] for f in want[b]], (n, 4)), atol=1e-3
        )
        np.testing.assert_array_equal(got["detection_scores"][b, n:], 0)
        np.testing.assert_array_equal(got["detection_boxes"][b, n:], 0)


@pytest.mark.parametrize("agnostic", [False, True])
def test_detections_match_numpy_pipeline(agnostic):
    deltas, logits, rois = _inputs(0, agnostic)
    generator = postprocess.FastRCNNDetectionGenerator(
        max_total_size=30, nms_iou_threshold=0.5, score_threshold=0.05, pre_nms_num_boxes=25
    )
    fn = tf.function(generator, jit_compile=True)
    weights = (10.0, 10.0, 5.0, 5.0)
    got = fn(deltas, logits, rois, _IMAGE_SHAPE)
    want = _np_detections(deltas, logits, rois, weights, 30, 0.5, 0.05, 25)
    _check(got, want, 30)
    plain = _np_detections(deltas, logits, rois, weights, 30, 0.5, 0.05, 25, nms=False)
    assert [f[0] for f in want[0]] != [f[0] for f in plain[0]]  # NMS suppressed boxes
    # A cascade stage's weights change the decoding.
    cascade = (20.0, 20.0, 10.0, 10.0)
    got = generator(deltas, logits, rois, _IMAGE_SHAPE, box_weights=cascade)
    _check(got, _np_detections(deltas, logits, rois, cascade, 30, 0.5, 0.05, 25), 30)


def test_without_nms_and_empty_rois():
    deltas, logits, rois = _inputs(1)
    logits[:, -3:, 1] = 20.0  # padded ROIs with confident logits never become detections
    generator = postprocess.FastRCNNDetectionGenerator(
        max_total_size=20, score_threshold=0.7, apply_nms=False
    )
    got = tf.function(generator, jit_compile=True)(deltas, logits, rois, _IMAGE_SHAPE)
    want = _np_detections(deltas, logits, rois, (10, 10, 5, 5), 20, 1.0, 0.7, 1000, nms=False)
    assert 0 < len(want[0]) < 20
    _check(got, want, 20)


def test_bad_box_outputs_raise():
    deltas, logits, rois = _inputs(2)
    generator = postprocess.FastRCNNDetectionGenerator()
    with pytest.raises(ValueError, match="class-agnostic"):
        generator(deltas[..., :8], logits, rois, _IMAGE_SHAPE)
    with pytest.raises(ValueError, match="max_total_size"):
        postprocess.FastRCNNDetectionGenerator(max_total_size=0)
