"""ops.matcher against a per-candidate NumPy loop, batched and for one image, eager and XLA."""

import numpy as np
import pytest
import tensorflow as tf

from detection.ops import matcher


def numpy_match(iou, valid, match_thr, unmatched_thr, lower=0.0, force=False):
    """One candidate, then one row at a time: the rule of the module docstring."""
    num_rows, num_candidates = iou.shape
    matches = np.full(num_candidates, matcher.NEGATIVE)
    for j in range(num_candidates):
        best, best_iou = -1, -1.0
        for i in range(num_rows):
            if valid[i] and iou[i, j] > best_iou:
                best, best_iou = i, iou[i, j]
        if best_iou >= match_thr:
            matches[j] = best
        elif best_iou >= unmatched_thr:
            matches[j] = matcher.IGNORED
        elif 0.0 <= best_iou < lower:
            matches[j] = matcher.IGNORED
    if force:
        claimed = {}
        for i in range(num_rows):
            if valid[i] and iou[i].max() > 0:
                claimed.setdefault(int(np.argmax(iou[i])), i)
        for j, i in claimed.items():
            matches[j] = i
    return matches


def _random_iou(rng, batch, rows, candidates):
    # Quantized values make ties (first row / first candidate wins) frequent.
    iou = rng.integers(0, 11, size=(batch, rows, candidates)) / 10.0
    iou[rng.uniform(size=iou.shape) < 0.3] = 0.0
    return iou.astype(np.float32)


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("lower", [0.0, 0.15])
def test_batched_matching_equals_numpy(force, lower):
    rng = np.random.default_rng(0)
    iou = _random_iou(rng, 4, 5, 30)
    valid = rng.uniform(size=(4, 5)) < 0.7
    valid[3] = False  # an image with padding rows only
    got = matcher.match_iou(iou, valid, 0.5, 0.3, negative_lower_bound=lower, force_match=force)
    assert got.shape == (4, 30) and got.dtype == tf.int32
    for b in range(4):
        expected = numpy_match(iou[b], valid[b], 0.5, 0.3, lower, force)
        np.testing.assert_array_equal(got[b], expected, err_msg=f"image {b}")
    assert np.all(got.numpy()[3] == matcher.NEGATIVE)


def test_no_rows_and_leading_dimensions():
    empty = matcher.match_iou(
        np.zeros([0, 7], np.float32), np.zeros([0], bool), 0.5, 0.4, 0.0, True
    )
    np.testing.assert_array_equal(empty, np.full(7, matcher.NEGATIVE))
    rng = np.random.default_rng(1)
    iou = _random_iou(rng, 6, 3, 8).reshape(2, 3, 3, 8)
    valid = np.ones([2, 3, 3], bool)
    got = matcher.match_iou(iou, valid, 0.6, 0.6, force_match=True).numpy()
    assert got.shape == (2, 3, 8)
    for index in np.ndindex(2, 3):
        np.testing.assert_array_equal(
            got[index], numpy_match(iou[index], valid[index], 0.6, 0.6, force=True)
        )


def test_match_boxes_skips_padding_and_compiles_with_xla():
    candidates = np.float32([[0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30], [50, 50, 60, 60]])
    gt = np.float32([[[0, 0, 10, 10], [20, 20, 30, 31], [-1, -1, -1, -1]]])
    classes = np.int32([[1, 2, -1]])

    @tf.function(jit_compile=True)
    def run(gt, classes):
        return matcher.match_boxes(candidates, gt, classes, 0.5, 0.4, force_match=True)

    # IoU: candidate 1 with row 0 is 0.5 (matched); candidate 3 overlaps nothing (negative).
    np.testing.assert_array_equal(run(gt, classes), [[0, 0, 1, matcher.NEGATIVE]])


def test_gather_matched_reads_rows_and_fills_the_rest():
    values = tf.constant([[[1.0, 1.0], [2.0, 2.0]], [[3.0, 3.0], [4.0, 4.0]]])
    matches = tf.constant([[1, -1, 0], [-2, 1, 1]])
    np.testing.assert_array_equal(
        matcher.gather_matched(values, matches, -5.0),
        [[[2, 2], [-5, -5], [1, 1]], [[-5, -5], [4, 4], [4, 4]]],
    )
    none = matcher.gather_matched(tf.zeros([0], tf.int32), tf.constant([-1, -1]), 7)
    np.testing.assert_array_equal(none, [7, 7])
