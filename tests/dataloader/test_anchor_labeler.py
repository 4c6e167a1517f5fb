"""Tests of RetinaNet / RPN anchor labels against a brute-force NumPy matcher."""

import numpy as np
import pytest
import tensorflow as tf

from detection.dataloader import anchor_labeler
from detection.ops import anchors as anchors_lib
from detection.ops import boxes as box_ops


def _anchors(min_level=3, max_level=5):
    return anchors_lib.Anchors(min_level, max_level, 2, [1.0, 2.0, 0.5], 4.0, 64)


def _np_iou_matrix(gt, anchors):
    """[N, M] IoU in float32 with the operation order of box_iou."""
    gt = gt.astype(np.float32)[:, None, :]
    an = anchors.astype(np.float32)[None, :, :]
    zero = np.float32(0)
    ih = np.maximum(np.minimum(gt[..., 2], an[..., 2]) - np.maximum(gt[..., 0], an[..., 0]), zero)
    iw = np.maximum(np.minimum(gt[..., 3], an[..., 3]) - np.maximum(gt[..., 1], an[..., 1]), zero)
    inter = ih * iw

    def area(b):
        return np.maximum(b[..., 2] - b[..., 0], zero) * np.maximum(b[..., 3] - b[..., 1], zero)

    union = area(gt) + area(an) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / union, zero)


def _np_match(anchors, gt, classes, match_thr, unmatched_thr):
    """ArgMaxMatcher(negatives_lower_than_unmatched, force_match_for_each_row)
    one anchor and one box at a time; padding/degenerate rows never match."""
    iou = _np_iou_matrix(gt, anchors) if len(gt) else np.zeros((0, len(anchors)))
    valid = [c >= 0 and b[2] > b[0] and b[3] > b[1] for b, c in zip(gt, classes)]
    matches = np.full(len(anchors), -1)
    for j in range(len(anchors)):
        best, best_iou = -1, -1.0
        for i in range(len(gt)):
            if valid[i] and iou[i, j] > best_iou:
                best, best_iou = i, iou[i, j]
        if best_iou >= match_thr:
            matches[j] = best
        elif best_iou >= unmatched_thr:
            matches[j] = -2
    claimed = {}
    for i in range(len(gt)):
        if valid[i] and iou[i].max() > 0:
            claimed.setdefault(int(np.argmax(iou[i])), i)
    for j, i in claimed.items():
        matches[j] = i
    return matches, iou


def _np_encode(boxes, anchors):
    h, w = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    ha, wa = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    return np.stack(
        [
            (boxes[:, 0] + h / 2 - anchors[:, 0] - ha / 2) / ha,
            (boxes[:, 1] + w / 2 - anchors[:, 1] - wa / 2) / wa,
            np.log(h / ha),
            np.log(w / wa),
        ],
        axis=1,
    )


def _np_box_targets(anchors, gt, matches):
    targets = np.zeros((len(anchors), 4))
    pos = matches >= 0
    targets[pos] = _np_encode(gt[matches[pos]].astype(np.float64), anchors[pos].astype(np.float64))
    return targets


def _flatten(multilevel, anchors):
    return np.concatenate([multilevel[l].numpy().reshape(-1) for l in anchors.levels])


def _random_gt(rng, num, size=64.0):
    centers = rng.uniform(0, size, size=(num, 2))
    half = rng.uniform(2, 20, size=(num, 2))
    boxes = np.concatenate([centers - half, centers + half], axis=1)
    return np.clip(boxes, 0, size).astype(np.float32), rng.integers(1, 4, size=num).astype(np.int32)


def _check_retinanet(anchors, gt, classes, match_thr, unmatched_thr):
    labeler = anchor_labeler.AnchorLabeler(anchors, match_thr, unmatched_thr)
    cls_targets, box_targets, num_positives = labeler.label_anchors(gt, classes)
    matches, iou = _np_match(anchors.numpy_boxes, gt, classes, match_thr, unmatched_thr)
    want_cls = np.where(matches >= 0, classes[np.maximum(matches, 0)] if len(gt) else 0, matches)
    per_loc = anchors.anchors_per_location
    for level, (h, w) in anchors.feature_sizes.items():
        assert cls_targets[level].shape == (h, w, per_loc)
        assert cls_targets[level].dtype == tf.int32
        assert box_targets[level].shape == (h, w, per_loc * 4)
        assert box_targets[level].dtype == tf.float32
    np.testing.assert_array_equal(_flatten(cls_targets, anchors), want_cls)
    got_boxes = _flatten(box_targets, anchors).reshape(-1, 4)
    assert np.all(np.isfinite(got_boxes))
    np.testing.assert_allclose(
        got_boxes, _np_box_targets(anchors.numpy_boxes, gt, matches), atol=1e-5
    )
    assert num_positives.dtype == tf.float32
    assert num_positives == np.sum(matches >= 0)
    return matches, iou


def test_retinanet_labels_match_reference_with_force_match():
    rng = np.random.default_rng(0)
    anchors = _anchors()
    gt, classes = _random_gt(rng, 8)
    gt[0] = [30.0, 30.0, 33.0, 34.5]  # tiny: best IoU far below 0.5
    matches, iou = _check_retinanet(anchors, gt, classes, 0.5, 0.5)
    forced = np.flatnonzero(matches == 0)
    assert len(forced) == 1 and iou[0, forced[0]] < 0.5
    assert np.sum(matches >= 0) > 8 and not np.any(matches == -2)


def test_retinanet_labels_ignore_band():
    rng = np.random.default_rng(1)
    anchors = _anchors()
    gt, classes = _random_gt(rng, 6)
    matches, _ = _check_retinanet(anchors, gt, classes, 0.6, 0.4)
    assert np.any(matches == -2) and np.any(matches >= 0)


def test_retinanet_labels_without_boxes():
    anchors = _anchors()
    gt = np.zeros((0, 4), np.float32)
    classes = np.zeros((0,), np.int32)
    matches, _ = _check_retinanet(anchors, gt, classes, 0.5, 0.5)
    assert np.all(matches == -1)


def test_padding_and_degenerate_rows_never_match():
    rng = np.random.default_rng(2)
    anchors = _anchors()
    gt, classes = _random_gt(rng, 4)
    padded_gt = np.concatenate(
        [
            gt[:2],
            np.full((2, 4), -1, np.float32),  # padding
            np.float32([[10, 10, 10, 30], [20, 20, 40, 40]]),  # zero height; class -1
            gt[2:],
        ]
    )
    padded_classes = np.concatenate([classes[:2], [-1, -1, 2, -1], classes[2:]])
    matches, _ = _check_retinanet(anchors, padded_gt, padded_classes, 0.5, 0.4)
    assert not np.any(np.isin(matches, [2, 3, 4, 5]))
    labeler = anchor_labeler.AnchorLabeler(anchors, 0.5, 0.4)
    with_padding = labeler.label_anchors(padded_gt, padded_classes)
    without = labeler.label_anchors(gt, classes)
    for level in anchors.levels:
        np.testing.assert_array_equal(with_padding[0][level], without[0][level])
        np.testing.assert_allclose(with_padding[1][level], without[1][level])


def test_duplicate_boxes_go_to_lowest_index():
    anchors = _anchors()
    box = np.float32([[8, 8, 40, 40]])
    gt = np.concatenate([box, box, np.float32([[44, 44, 46, 47]])] * 1)
    classes = np.int32([3, 1, 2])
    matches, _ = _check_retinanet(anchors, gt, classes, 0.5, 0.5)
    assert not np.any(matches == 1) and np.any(matches == 0)


def test_labels_in_tf_data_with_dynamic_counts():
    rng = np.random.default_rng(3)
    anchors = _anchors()
    labeler = anchor_labeler.AnchorLabeler(anchors, 0.5, 0.4)
    boxes = np.full((3, 5, 4), -1, np.float32)
    classes = np.full((3, 5), -1, np.int32)
    for i, n in enumerate([3, 0, 5]):
        boxes[i, :n], classes[i, :n] = _random_gt(rng, n)

    def label(b, c):
        keep = c >= 0  # a dynamic number of rows, as a parser would produce
        return labeler.label_anchors(tf.boolean_mask(b, keep), tf.boolean_mask(c, keep))

    dataset = tf.data.Dataset.from_tensor_slices((boxes, classes)).map(label)
    cls_spec, box_spec, num_spec = dataset.element_spec
    for level, (h, w) in anchors.feature_sizes.items():
        assert cls_spec[level].shape == (h, w, 6)
        assert box_spec[level].shape == (h, w, 24)
    assert num_spec.shape == ()
    for i, (cls_targets, box_targets, num_positives) in enumerate(dataset):
        n = int(np.sum(classes[i] >= 0))
        matches, _ = _np_match(anchors.numpy_boxes, boxes[i, :n], classes[i, :n], 0.5, 0.4)
        want_cls = np.where(matches >= 0, classes[i][np.maximum(matches, 0)], matches)
        np.testing.assert_array_equal(_flatten(cls_targets, anchors), want_cls)
        np.testing.assert_allclose(
            _flatten(box_targets, anchors).reshape(-1, 4),
            _np_box_targets(anchors.numpy_boxes, boxes[i, :n], matches),
            atol=1e-5,
        )
        assert num_positives == np.sum(matches >= 0)


def test_positives_only_encoding_equals_encoding_every_anchor():
    """The labeler encodes only matched anchors and scatters them into zeros; the straight
    way encodes every anchor against its matched box (unmatched ones against themselves,
    which gives exact zeros). Classes and counts are identical; box targets agree to 2 units
    in the last place (the same float ops, but log() takes a vectorized or a scalar path
    depending on where an element lands in the tensor)."""
    rng = np.random.default_rng(4)
    anchors = _anchors(3, 6)
    anchor_boxes = anchors.numpy_boxes
    labeler = anchor_labeler.AnchorLabeler(anchors, 0.5, 0.4)
    for num in (0, 1, 3, 9):
        gt, classes = _random_gt(rng, num)
        cls_targets, box_targets, num_positives = labeler.label_anchors(gt, classes)
        matches, _ = _np_match(anchor_boxes, gt, classes, 0.5, 0.4)
        matched = anchor_boxes.copy()
        matched[matches >= 0] = gt[matches[matches >= 0]]
        every_anchor = box_ops.encode_boxes(matched, anchor_boxes, weights=(1.0, 1.0, 1.0, 1.0))
        got = _flatten(box_targets, anchors).reshape(-1, 4)
        np.testing.assert_array_equal(got[matches < 0], 0.0)
        np.testing.assert_array_max_ulp(got, every_anchor.numpy(), maxulp=2)
        assert num_positives == np.sum(matches >= 0)
        want_cls = np.where(matches >= 0, classes[np.maximum(matches, 0)] if num else 0, matches)
        np.testing.assert_array_equal(_flatten(cls_targets, anchors), want_cls)


def _rpn_labels(anchors, gt, classes, **kwargs):
    labeler = anchor_labeler.RpnAnchorLabeler(anchors, **kwargs)
    scores, box_targets = labeler.label_anchors(gt, classes)
    assert set(scores) == set(anchors.levels) == set(box_targets)
    for level, (h, w) in anchors.feature_sizes.items():
        assert scores[level].shape == (h, w, anchors.anchors_per_location)
        assert scores[level].dtype == tf.int32
    return _flatten(scores, anchors), _flatten(box_targets, anchors).reshape(-1, 4)


def test_rpn_samples_are_balanced_subsets():
    rng = np.random.default_rng(4)
    anchors = _anchors(2, 4)
    gt, classes = _random_gt(rng, 10)
    matches, _ = _np_match(anchors.numpy_boxes, gt, classes, 0.7, 0.3)
    num_matched = np.sum(matches >= 0)
    assert num_matched > 4  # the fg cap below is binding
    scores, box_targets = _rpn_labels(
        anchors,
        gt,
        classes,
        match_threshold=0.7,
        unmatched_threshold=0.3,
        rpn_batch_size_per_im=8,
        rpn_fg_fraction=0.5,
    )
    assert np.sum(scores == 1) == 4
    assert np.sum(scores == 0) == 4
    assert np.all(matches[scores == 1] >= 0)
    assert np.all(matches[scores == 0] == -1)
    np.testing.assert_allclose(
        box_targets, _np_box_targets(anchors.numpy_boxes, gt, matches), atol=1e-5
    )
    # Sampling is random, not the first candidates in anchor order.
    draws = [_rpn_labels(anchors, gt, classes, rpn_batch_size_per_im=8)[0] for _ in range(2)]
    assert not np.array_equal(draws[0], draws[1])


def test_rpn_takes_everything_when_batch_is_large():
    rng = np.random.default_rng(5)
    anchors = _anchors(2, 4)
    gt, classes = _random_gt(rng, 3)
    gt[0] = [30.0, 30.0, 32.0, 33.0]  # force-matched below 0.7
    matches, _ = _np_match(anchors.numpy_boxes, gt, classes, 0.7, 0.3)
    scores, _ = _rpn_labels(
        anchors, gt, classes, rpn_batch_size_per_im=10 * anchors.num_anchors, rpn_fg_fraction=0.5
    )
    want = np.where(matches >= 0, 1, np.where(matches == -1, 0, -1))
    np.testing.assert_array_equal(scores, want)
    assert np.any(matches == -2) and np.any(matches == 0)


def test_rpn_without_boxes_fills_with_negatives():
    anchors = _anchors(2, 4)
    scores, box_targets = _rpn_labels(
        anchors,
        np.zeros((0, 4), np.float32),
        np.zeros((0,), np.int32),
        rpn_batch_size_per_im=16,
        rpn_fg_fraction=0.25,
    )
    assert np.sum(scores == 1) == 0 and np.sum(scores == 0) == 16
    np.testing.assert_array_equal(box_targets, 0)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(match_threshold=0.3, unmatched_threshold=0.5),
        dict(rpn_batch_size_per_im=0),
        dict(rpn_fg_fraction=0.0),
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        anchor_labeler.RpnAnchorLabeler(_anchors(), **kwargs)
