"""ROI sampling against NumPy IoU labelling: counts, fractions, targets, static shapes."""

import numpy as np
import pytest
import tensorflow as tf

from detection.ops import roi_sampling

_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
_FG, _BG_HI, _BG_LO = 0.5, 0.5, 0.1


def _inputs(seed, num_rois=60):
    """Two images: 3 and 2 groundtruth boxes (+ -1 padding), ROIs around them and elsewhere,
    and zero (padding) ROIs at the end."""
    rng = np.random.default_rng(seed)
    gt_boxes = -np.ones((2, 4, 4), np.float32)
    gt_classes = -np.ones((2, 4), np.int32)
    gt_boxes[0, :3] = [[10, 10, 40, 50], [60, 20, 100, 60], [30, 70, 90, 120]]
    gt_classes[0, :3] = [1, 2, 1]
    gt_boxes[1, :2] = [[0, 0, 64, 64], [70, 70, 110, 100]]
    gt_classes[1, :2] = [2, 3]
    rois = np.zeros((2, num_rois, 4), np.float32)
    for b in range(2):
        valid = gt_boxes[b, gt_classes[b] >= 0]
        for i in range(num_rois - 6):
            if i % 2 == 0:  # jittered copy of a groundtruth box: IoU spread over (0, 1)
                y0, x0, y1, x1 = valid[i // 2 % len(valid)]
                h, w = y1 - y0, x1 - x0
                shift = rng.uniform(-0.5, 0.5, 2) * [h, w]
                scale = np.exp(rng.uniform(-0.5, 0.5, 2))
                yc, xc = (y0 + y1) / 2 + shift[0], (x0 + x1) / 2 + shift[1]
                rois[b, i] = [
                    yc - h * scale[0] / 2,
                    xc - w * scale[1] / 2,
                    yc + h * scale[0] / 2,
                    xc + w * scale[1] / 2,
                ]
            else:
                y0, x0 = rng.uniform(0, 110, 2)
                rois[b, i] = [y0, x0, y0 + rng.uniform(4, 30), x0 + rng.uniform(4, 30)]
    return rois, gt_boxes, gt_classes


def _np_iou(boxes, gt):
    """[n, m] IoU."""
    ih = np.maximum(
        np.minimum(boxes[:, None, 2], gt[None, :, 2])
        - np.maximum(boxes[:, None, 0], gt[None, :, 0]),
        0,
    )
    iw = np.maximum(
        np.minimum(boxes[:, None, 3], gt[None, :, 3])
        - np.maximum(boxes[:, None, 1], gt[None, :, 1]),
        0,
    )
    inter = ih * iw
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    return inter / (area(boxes)[:, None] + area(gt)[None, :] - inter)


def _np_encode(gt, roi):
    h, w = roi[2] - roi[0], roi[3] - roi[1]
    gh, gw = gt[2] - gt[0], gt[3] - gt[1]
    return np.array(
        [
            10 * ((gt[0] + gh / 2) - (roi[0] + h / 2)) / h,
            10 * ((gt[1] + gw / 2) - (roi[1] + w / 2)) / w,
            5 * np.log(gh / h),
            5 * np.log(gw / w),
        ]
    )


def _np_labels(candidates, gt_boxes, gt_classes, fg, bg_hi, bg_lo):
    """(foreground, background, best gt row) of each non-empty candidate."""
    valid = gt_classes >= 0
    iou = _np_iou(candidates.astype(np.float64), gt_boxes[valid].astype(np.float64))
    best, rows = iou.max(1), np.flatnonzero(valid)[iou.argmax(1)]
    usable = (candidates[:, 2] > candidates[:, 0]) & (candidates[:, 3] > candidates[:, 1])
    return usable & (best >= fg), usable & (best >= bg_lo) & (best < bg_hi), rows


def _check_samples(out, rois, gt_boxes, gt_classes, num_samples, fg_fraction, mix):
    assert out["rois"].shape == (2, num_samples, 4)
    for key in ("class_targets", "matched_gt_indices", "is_foreground", "valid"):
        assert out[key].shape == (2, num_samples), key
    assert out["class_targets"].dtype == tf.int32
    assert out["matched_gt_indices"].dtype == tf.int32
    out = {k: v.numpy() for k, v in out.items()}
    for b in range(2):
        candidates = rois[b]
        if mix:
            candidates = np.concatenate([rois[b], gt_boxes[b][gt_classes[b] >= 0]])
        fg, bg, rows = _np_labels(candidates, gt_boxes[b], gt_classes[b], _FG, _BG_HI, _BG_LO)
        num_fg = min(fg.sum(), int(fg_fraction * num_samples))
        num_bg = min(bg.sum(), num_samples - num_fg)
        is_fg, valid = out["is_foreground"][b], out["valid"][b]
        np.testing.assert_array_equal(is_fg, np.arange(num_samples) < num_fg)
        np.testing.assert_array_equal(valid, np.arange(num_samples) < num_fg + num_bg)
        picked = []
        for s in range(num_fg + num_bg):
            (row,) = np.flatnonzero(np.all(candidates == out["rois"][b, s], axis=1))[:1]
            picked.append(row)
            if s < num_fg:
                assert fg[row]
                assert out["matched_gt_indices"][b, s] == rows[row]
                assert out["class_targets"][b, s] == gt_classes[b, rows[row]]
                np.testing.assert_allclose(
                    out["box_targets"][b, s],
                    _np_encode(gt_boxes[b, rows[row]], candidates[row]),
                    atol=2e-4,
                )
            else:
                assert bg[row]
                assert out["matched_gt_indices"][b, s] == -1
                assert out["class_targets"][b, s] == 0
                np.testing.assert_array_equal(out["box_targets"][b, s], 0)
        if mix:
            # A groundtruth box and a jittered ROI never coincide, so rows are distinct samples.
            assert len(set(picked)) == len(picked)
        else:
            assert len(set(map(tuple, out["rois"][b, : num_fg + num_bg]))) == num_fg + num_bg
        rest = slice(num_fg + num_bg, None)
        np.testing.assert_array_equal(out["rois"][b, rest], 0)
        np.testing.assert_array_equal(out["class_targets"][b, rest], 0)
        np.testing.assert_array_equal(out["matched_gt_indices"][b, rest], -1)
    return out


@pytest.mark.parametrize("mix", [True, False])
@pytest.mark.parametrize("num_samples, fg_fraction", [(16, 0.25), (48, 0.5), (80, 0.75)])
def test_samples_match_numpy_labels_and_quotas(mix, num_samples, fg_fraction):
    rois, gt_boxes, gt_classes = _inputs(0)
    out = roi_sampling.sample_rois(
        rois, gt_boxes, gt_classes, num_samples, fg_fraction, _FG, _BG_HI, _BG_LO, mix_gt_boxes=mix
    )
    _check_samples(out, rois, gt_boxes, gt_classes, num_samples, fg_fraction, mix)


def test_groundtruth_mixing_adds_foreground():
    rois, gt_boxes, gt_classes = _inputs(1)
    far = np.tile(np.float32([[200, 200, 210, 210]]), [2, rois.shape[1], 1])
    mixed = roi_sampling.sample_rois(far, gt_boxes, gt_classes, 8, 0.5, _FG, _BG_HI, 0.0)
    np.testing.assert_array_equal(mixed["is_foreground"].numpy().sum(1), [3, 2])
    # Each groundtruth box samples itself: targets of an exact match are 0.
    np.testing.assert_allclose(mixed["box_targets"].numpy(), 0, atol=1e-5)
    alone = roi_sampling.sample_rois(
        far, gt_boxes, gt_classes, 8, 0.5, _FG, _BG_HI, 0.0, mix_gt_boxes=False
    )
    assert not alone["is_foreground"].numpy().any()
    np.testing.assert_array_equal(alone["valid"].numpy(), True)  # all background


def test_sampling_is_random_and_compiles_with_xla():
    rois, gt_boxes, gt_classes = _inputs(2)
    fn = tf.function(roi_sampling.sample_rois, jit_compile=True)
    seen = set()
    for _ in range(6):
        out = fn(rois, gt_boxes, gt_classes, 8, 0.25, _FG, _BG_HI, _BG_LO, False)
        out = _check_samples(out, rois, gt_boxes, gt_classes, 8, 0.25, False)
        seen.update(map(tuple, out["rois"][0, :2]))
    # 2 foreground slots, far more foreground candidates: repeated calls pick different ones.
    assert len(seen) > 2


def test_skip_subsampling_labels_every_roi_in_order():
    rois, gt_boxes, gt_classes = _inputs(3)
    rois[:, 0] = gt_boxes[:, 0] + 1.0  # a close ROI: foreground at the stricter threshold
    thresh = 0.6
    out = roi_sampling.sample_rois(
        rois,
        gt_boxes,
        gt_classes,
        rois.shape[1],
        0.25,
        thresh,
        thresh,
        0.0,
        mix_gt_boxes=False,
        box_weights=(20.0, 20.0, 10.0, 10.0),
        skip_subsampling=True,
    )
    np.testing.assert_array_equal(out["rois"], rois)
    for b in range(2):
        fg, bg, rows = _np_labels(rois[b], gt_boxes[b], gt_classes[b], thresh, thresh, 0.0)
        assert 0 < fg.sum() < len(fg)
        np.testing.assert_array_equal(out["is_foreground"][b], fg)
        np.testing.assert_array_equal(out["valid"][b], fg | bg)
        np.testing.assert_array_equal(out["matched_gt_indices"][b], np.where(fg, rows, -1))
        np.testing.assert_array_equal(out["class_targets"][b], np.where(fg, gt_classes[b][rows], 0))
        for i in np.flatnonzero(fg):
            np.testing.assert_allclose(
                out["box_targets"][b, i],
                2 * _np_encode(gt_boxes[b, rows[i]], rois[b, i]),
                atol=5e-4,
            )
        # The zero-padded ROIs are neither foreground nor background.
        assert not out["valid"][b, -6:].numpy().any()
    with pytest.raises(ValueError, match="skip_subsampling"):
        roi_sampling.sample_rois(
            rois, gt_boxes, gt_classes, 10, 0.25, thresh, thresh, 0.0, False, skip_subsampling=True
        )


def test_fewer_candidates_than_samples_pads_invalid_rows():
    rois, gt_boxes, gt_classes = _inputs(4, num_rois=10)
    out = roi_sampling.sample_rois(rois, gt_boxes, gt_classes, 32, 0.5, _FG, _BG_HI, _BG_LO)
    _check_samples(out, rois, gt_boxes, gt_classes, 32, 0.5, True)
    assert not out["valid"].numpy()[:, 15:].any()


def test_foreground_for_masks():
    rois, gt_boxes, gt_classes = _inputs(5)
    sampled = roi_sampling.sample_rois(rois, gt_boxes, gt_classes, 32, 0.5, _FG, _BG_HI, _BG_LO)
    num_fg = sampled["is_foreground"].numpy().sum(1)
    assert (num_fg > 4).all()
    few = roi_sampling.sample_foreground_for_masks(sampled, 4)
    for key in ("rois", "class_targets", "matched_gt_indices"):
        np.testing.assert_array_equal(few[key], sampled[key][:, :4])
    np.testing.assert_array_equal(few["valid"], True)
    many = tf.function(roi_sampling.sample_foreground_for_masks, jit_compile=True)(sampled, 40)
    assert many["rois"].shape == (2, 40, 4)
    for b in range(2):
        n = num_fg[b]
        np.testing.assert_array_equal(many["valid"][b], np.arange(40) < n)
        np.testing.assert_array_equal(many["rois"][b, :n], sampled["rois"][b, :n])
        np.testing.assert_array_equal(many["rois"][b, n:], 0)
        np.testing.assert_array_equal(many["class_targets"][b, n:], 0)
        np.testing.assert_array_equal(many["matched_gt_indices"][b, n:], -1)
    # Unsorted (cascade) samples: foreground is gathered first, in order.
    shuffled = {k: tf.reverse(v, axis=[1]) for k, v in sampled.items()}
    first = roi_sampling.sample_foreground_for_masks(shuffled, 3)
    for b in range(2):
        start = 32 - num_fg[b]
        np.testing.assert_array_equal(first["rois"][b], shuffled["rois"][b, start : start + 3])
        np.testing.assert_array_equal(first["valid"][b], True)


def test_image_without_groundtruth_samples_background_only():
    rois, gt_boxes, gt_classes = _inputs(6)
    gt_boxes[1], gt_classes[1] = -1.0, -1
    out = roi_sampling.sample_rois(rois, gt_boxes, gt_classes, 16, 0.25, _FG, _BG_HI, _BG_LO)
    assert not out["is_foreground"][1].numpy().any()
    np.testing.assert_array_equal(out["valid"][1], True)
    np.testing.assert_array_equal(out["class_targets"][1], 0)
    assert out["is_foreground"][0].numpy().sum() == 4
