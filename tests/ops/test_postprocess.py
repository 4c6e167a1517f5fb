"""Tests of the RetinaNet detection generator against a NumPy pipeline."""

import math

import numpy as np
import pytest
import tensorflow as tf

from detection.ops import postprocess

_LEVELS = {"3": 8, "4": 4, "5": 2}  # 64 px input
_ANCHORS_PER_LOC = 2
_NUM_CLASSES = 4  # background + 3
_IMAGE_SHAPE = np.float32([[64, 64], [48, 56]])


def _inputs(seed):
    """Random multilevel outputs with well-separated scores and anchors."""
    rng = np.random.default_rng(seed)
    anchors, box_out, cls_out = {}, {}, {}
    num_locations = sum(s * s for s in _LEVELS.values()) * _ANCHORS_PER_LOC
    probs = rng.permutation(np.linspace(0.01, 0.99, 2 * num_locations * _NUM_CLASSES))
    logits = np.log(probs / (1 - probs)).reshape(2, -1)
    start = 0
    for level, size in _LEVELS.items():
        stride = 2 ** int(level)
        centers = (np.arange(size) + 0.5) * stride
        cy, cx = np.meshgrid(centers, centers, indexing="ij")
        half = np.array([[stride, stride], [stride, 2 * stride]], np.float64)
        boxes = np.stack(
            [
                cy[..., None] - half[:, 0],
                cx[..., None] - half[:, 1],
                cy[..., None] + half[:, 0],
                cx[..., None] + half[:, 1],
            ],
            axis=-1,
        )  # [size, size, A, 4]
        anchors[level] = boxes.reshape(size, size, -1).astype(np.float32)
        box_out[level] = rng.normal(scale=0.2, size=(2, size, size, _ANCHORS_PER_LOC * 4)).astype(
            np.float32
        )
        count = size * size * _ANCHORS_PER_LOC * _NUM_CLASSES
        cls_out[level] = (
            logits[:, start : start + count].reshape(2, size, size, -1).astype(np.float32)
        )
        start += count
    return box_out, cls_out, anchors


def _np_iou(a, b):
    ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iw = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ih * iw
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if inter > 0 else 0.0


def _np_flatten(box_out, cls_out, anchors):
    """Returns boxes [b, N, 4] (decoded, unclipped), scores [b, N, C - 1]."""
    boxes, scores = [], []
    for level in sorted(_LEVELS, key=int):
        deltas = box_out[level].reshape(2, -1, 4).astype(np.float64)
        anc = anchors[level].reshape(1, -1, 4).astype(np.float64)
        ha, wa = anc[..., 2] - anc[..., 0], anc[..., 3] - anc[..., 1]
        yc = deltas[..., 0] * ha + anc[..., 0] + ha / 2
        xc = deltas[..., 1] * wa + anc[..., 1] + wa / 2
        h = np.exp(np.minimum(deltas[..., 2], math.log(1000 / 16))) * ha
        w = np.exp(np.minimum(deltas[..., 3], math.log(1000 / 16))) * wa
        boxes.append(np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=-1))
        logits = cls_out[level].reshape(2, -1, _NUM_CLASSES).astype(np.float64)
        scores.append(1 / (1 + np.exp(-logits))[..., 1:])
    return np.concatenate(boxes, 1), np.concatenate(scores, 1)


def _np_detections(box_out, cls_out, anchors, image_shape, max_total, iou_thr, score_thr, pre_nms):
    """Reference: sigmoid, drop background, decode, clip, per-class NMS."""
    boxes, scores = _np_flatten(box_out, cls_out, anchors)
    results = []
    for b in range(2):
        h, w = image_shape[b]
        clipped = np.clip(boxes[b], 0, [h, w, h, w])
        found = []
        for c in range(scores.shape[-1]):
            order = np.argsort(-scores[b, :, c], kind="stable")[:pre_nms]
            keep = []
            for i in order:
                if scores[b, i, c] <= score_thr or len(keep) == max_total:
                    break
                if all(_np_iou(clipped[i], clipped[j]) <= iou_thr for j in keep):
                    keep.append(i)
            found += [(scores[b, i, c], c + 1, clipped[i]) for i in keep]
        found.sort(key=lambda f: -f[0])
        results.append(found[:max_total])
    return results


def _check(got, want, max_total):
    assert got["detection_boxes"].shape == (2, max_total, 4)
    assert got["detection_scores"].shape == (2, max_total)
    assert got["detection_classes"].shape == (2, max_total)
    assert got["num_detections"].dtype == tf.int32
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
        np.testing.assert_array_equal(got["detection_classes"][b, n:], 0)


@pytest.mark.parametrize("jit", [False, True])
def test_detections_match_numpy_pipeline(jit):
    box_out, cls_out, anchors = _inputs(0)
    for max_total, iou_thr, score_thr, pre_nms in [(20, 0.5, 0.05, 5000), (100, 0.4, 0.5, 30)]:
        generator = postprocess.MultilevelDetectionGenerator(
            apply_nms=True,
            max_total_size=max_total,
            nms_iou_threshold=iou_thr,
            score_threshold=score_thr,
            pre_nms_num_boxes=pre_nms,
            apply_sigmoid=True,
        )
        fn = tf.function(generator, jit_compile=jit)
        got = fn(box_out, cls_out, anchors, _IMAGE_SHAPE)
        want = _np_detections(
            box_out, cls_out, anchors, _IMAGE_SHAPE, max_total, iou_thr, score_thr, pre_nms
        )
        _check(got, want, max_total)
    # The last setting is not saturated: NMS, not the caps, set the counts.
    assert 0 < len(want[0]) < 3 * 30


def test_batched_anchors_and_scores_without_sigmoid():
    box_out, cls_out, anchors = _inputs(1)
    probs = {k: 1 / (1 + np.exp(-v.astype(np.float64))) for k, v in cls_out.items()}
    batched_anchors = {k: np.stack([v, v]) for k, v in anchors.items()}
    generator = postprocess.MultilevelDetectionGenerator(
        max_total_size=10,
        nms_iou_threshold=0.5,
        score_threshold=0.05,
        pre_nms_num_boxes=100,
        apply_sigmoid=False,
    )
    got = generator(
        box_out, {k: v.astype(np.float32) for k, v in probs.items()}, batched_anchors, _IMAGE_SHAPE
    )
    want = _np_detections(box_out, cls_out, anchors, _IMAGE_SHAPE, 10, 0.5, 0.05, 100)
    _check(got, want, 10)


@pytest.mark.parametrize("jit", [False, True])
def test_without_nms_returns_top_k_pairs(jit):
    box_out, cls_out, anchors = _inputs(2)
    generator = postprocess.MultilevelDetectionGenerator(
        apply_nms=False, max_total_size=25, score_threshold=0.97
    )
    got = tf.function(generator, jit_compile=jit)(box_out, cls_out, anchors, _IMAGE_SHAPE)
    boxes, scores = _np_flatten(box_out, cls_out, anchors)
    want = []
    for b in range(2):
        h, w = _IMAGE_SHAPE[b]
        flat = scores[b].reshape(-1)
        order = [i for i in np.argsort(-flat, kind="stable")[:25] if flat[i] > 0.97]
        want.append(
            [(flat[i], i % 3 + 1, np.clip(boxes[b, i // 3], 0, [h, w, h, w])) for i in order]
        )
    assert 0 < len(want[0]) < 25  # the threshold cuts inside the top 25
    _check(got, want, 25)


def test_mismatched_levels_raise():
    box_out, cls_out, anchors = _inputs(3)
    del cls_out["5"]
    generator = postprocess.MultilevelDetectionGenerator()
    with pytest.raises(ValueError, match="same levels"):
        generator(box_out, cls_out, anchors, _IMAGE_SHAPE)
    with pytest.raises(ValueError, match="max_total_size"):
        postprocess.MultilevelDetectionGenerator(max_total_size=0)


def test_without_nms_pads_when_fewer_pairs_than_max_total_size():
    box_out, cls_out, anchors = _inputs(4)
    num_pairs = sum(s * s for s in _LEVELS.values()) * _ANCHORS_PER_LOC * 3
    generator = postprocess.MultilevelDetectionGenerator(
        apply_nms=False, max_total_size=num_pairs + 7, score_threshold=0.0
    )
    got = tf.function(generator, jit_compile=True)(box_out, cls_out, anchors, _IMAGE_SHAPE)
    _, scores = _np_flatten(box_out, cls_out, anchors)
    assert got["detection_scores"].shape == (2, num_pairs + 7)
    np.testing.assert_array_equal(got["num_detections"], [num_pairs] * 2)
    np.testing.assert_allclose(
        got["detection_scores"][:, :num_pairs], -np.sort(-scores.reshape(2, -1), axis=1), atol=1e-6
    )
    np.testing.assert_array_equal(got["detection_boxes"][:, num_pairs:], 0)
