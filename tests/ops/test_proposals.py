"""RPN proposals against a NumPy implementation of the original `roi_proposal` rule."""

import math

import numpy as np
import pytest
import tensorflow as tf

from detection.ops import anchors as anchor_ops
from detection.ops import proposals

_IMAGE = 64
_IMAGE_SHAPE = np.float32([[64, 64], [40, 56]])


def _inputs(seed):
    """RPN outputs over levels 2..4 of a 64 px input, 3 anchors per location."""
    anchors = anchor_ops.Anchors(2, 4, 1, [1.0, 2.0, 0.5], 8, _IMAGE).multilevel_boxes
    rng = np.random.default_rng(seed)
    scores, boxes = {}, {}
    for level, anchor in anchors.items():
        h, w = anchor.shape[:2]
        scores[level] = rng.normal(scale=2.0, size=(2, h, w, 3)).astype(np.float32)
        boxes[level] = rng.normal(scale=0.3, size=(2, h, w, 12)).astype(np.float32)
    return scores, boxes, {k: v.numpy() for k, v in anchors.items()}


def _np_iou(a, b):
    ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iw = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ih * iw
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if inter > 0 else 0.0


def _np_proposals(scores, deltas, anchors, image_shape, pre, post, nms, score_thr, min_size):
    """Per image and level: sigmoid, decode, clip, filter, top pre, greedy NMS; then top post."""
    results = []
    for b in range(2):
        height, width = image_shape[b]
        found = []
        for level in sorted(scores, key=int):
            s = 1 / (1 + np.exp(-scores[level][b].reshape(-1).astype(np.float64)))
            d = deltas[level][b].reshape(-1, 4).astype(np.float64)
            a = anchors[level].reshape(-1, 4).astype(np.float64)
            ha, wa = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
            yc, xc = a[:, 0] + ha / 2 + d[:, 0] * ha, a[:, 1] + wa / 2 + d[:, 1] * wa
            h = np.exp(np.minimum(d[:, 2], math.log(1000 / 16))) * ha
            w = np.exp(np.minimum(d[:, 3], math.log(1000 / 16))) * wa
            box = np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], -1)
            box = np.clip(box, 0, [height, width, height, width])
            keep = np.ones(len(s), bool)
            if min_size > 0:
                keep &= (box[:, 2] - box[:, 0] >= min_size) & (box[:, 3] - box[:, 1] >= min_size)
            if score_thr > 0:
                keep &= s > score_thr
            order = [i for i in np.argsort(-s, kind="stable") if keep[i]][:pre]
            kept = []
            for i in order:
                if len(kept) == post:
                    break
                if nms <= 0 or all(_np_iou(box[i], box[j]) <= nms for j in kept):
                    kept.append(i)
            found += [(s[i], box[i]) for i in kept]
        found.sort(key=lambda f: -f[0])
        results.append(found[:post])
    return results


def _check(rois, roi_scores, want, post):
    assert rois.shape == (2, post, 4)
    assert roi_scores.shape == (2, post)
    for b in range(2):
        n = len(want[b])
        np.testing.assert_allclose(roi_scores[b, :n], [f[0] for f in want[b]], rtol=1e-5)
        np.testing.assert_allclose(
            rois[b, :n], np.reshape([f[1] for f in want[b]], (n, 4)), atol=1e-3
        )
        np.testing.assert_array_equal(roi_scores[b, n:], 0)
        np.testing.assert_array_equal(rois[b, n:], 0)


@pytest.mark.parametrize(
    "pre, post, nms, score_thr, min_size",
    [
        (50, 40, 0.7, 0.0, 0.0),  # the original defaults' shape, scaled down
        (30, 100, 0.5, 0.6, 6.0),  # filters on, fewer survivors than post: zero padding
        (20, 25, 0.0, 0.0, 0.0),  # NMS off: the best boxes of each level
    ],
)
def test_proposals_match_numpy_rule(pre, post, nms, score_thr, min_size):
    scores, deltas, anchors = _inputs(0)
    fn = tf.function(proposals.multilevel_proposals, jit_compile=True)
    rois, roi_scores = fn(
        scores, deltas, anchors, _IMAGE_SHAPE, pre, post, nms, score_thr, min_size
    )
    want = _np_proposals(scores, deltas, anchors, _IMAGE_SHAPE, pre, post, nms, score_thr, min_size)
    _check(rois.numpy(), roi_scores.numpy(), want, post)
    if nms > 0:
        # NMS changed the result: without it, other (overlapping) boxes would be proposed.
        plain = _np_proposals(
            scores, deltas, anchors, _IMAGE_SHAPE, pre, post, 0.0, score_thr, min_size
        )
        assert [f[0] for f in plain[0]] != [f[0] for f in want[0]]
    if score_thr > 0:
        assert all(0 < len(w) < post for w in want)


def test_batched_anchors_eager():
    scores, deltas, anchors = _inputs(1)
    batched = {k: np.stack([v, v]) for k, v in anchors.items()}
    rois, roi_scores = proposals.multilevel_proposals(
        scores, deltas, batched, _IMAGE_SHAPE, 40, 30, 0.7
    )
    want = _np_proposals(scores, deltas, anchors, _IMAGE_SHAPE, 40, 30, 0.7, 0.0, 0.0)
    _check(rois.numpy(), roi_scores.numpy(), want, 30)


def test_scores_without_sigmoid():
    scores, deltas, anchors = _inputs(2)
    probs = {
        k: (1 / (1 + np.exp(-v.astype(np.float64)))).astype(np.float32) for k, v in scores.items()
    }
    got = proposals.multilevel_proposals(
        probs, deltas, anchors, _IMAGE_SHAPE, 40, 30, 0.7, apply_sigmoid=False
    )
    want = _np_proposals(scores, deltas, anchors, _IMAGE_SHAPE, 40, 30, 0.7, 0.0, 0.0)
    _check(got[0].numpy(), got[1].numpy(), want, 30)


def test_bad_arguments_raise():
    scores, deltas, anchors = _inputs(3)
    del deltas["3"]
    with pytest.raises(ValueError, match="same non-empty levels"):
        proposals.multilevel_proposals(scores, deltas, anchors, _IMAGE_SHAPE, 10, 10, 0.7)
    scores, deltas, anchors = _inputs(3)
    with pytest.raises(ValueError, match="rpn_post_nms_top_k"):
        proposals.multilevel_proposals(scores, deltas, anchors, _IMAGE_SHAPE, 10, 0, 0.7)
