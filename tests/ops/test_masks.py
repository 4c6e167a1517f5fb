"""Mask ops against NumPy references: box-relative crops (training targets) and pastes."""

import math

import numpy as np
import tensorflow as tf

from detection.ops import masks as mask_ops

import numpy_references as references


def test_crop_and_resize_masks_matches_numpy_bilinear_reference():
    rng = np.random.default_rng(0)
    masks = (rng.uniform(size=(5, 20, 30)) > 0.5).astype(np.float32)
    boxes = np.array(
        [
            [0, 0, 20, 30],
            [2.5, 3.25, 11.0, 29.0],
            [0, 10, 7, 30],
            [13.2, 0.0, 20.0, 4.6],
            [5, 5, 6, 6],
        ],
        np.float32,
    )
    got = mask_ops.crop_and_resize_masks(masks, boxes, 8).numpy()
    assert got.shape == (5, 8, 8)
    for mask, box, crop in zip(masks, boxes, got):
        np.testing.assert_allclose(crop, references.crop_and_resize_mask(mask, box, 8), atol=1e-5)
    empty = mask_ops.crop_and_resize_masks(
        np.zeros([0, 20, 30], np.float32), np.zeros([0, 4], np.float32), 8
    )
    assert empty.shape == (0, 8, 8)


def test_square_mask_fills_its_box_crop():
    mask = np.zeros([1, 64, 64], np.float32)
    mask[0, 10:30, 0:20] = 1.0  # touches the left image border
    crop = mask_ops.crop_and_resize_masks(mask, [[10, 0, 30, 20]], 28).numpy()[0]
    assert crop.min() >= 0.5
    np.testing.assert_allclose(crop[1:-1, :-1], 1.0)


def test_paste_all_ones_mask_covers_box_with_rounded_corners():
    """Closed form for an all-ones mask: sampled value = coverage_y * coverage_x with the 1-d
    coverage clip(min(u + 1, cells - u), 0, 1) at mask coordinate u; edge pixels (other axis
    fully covered) are in exactly when their centre is inside the box."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        height, width = rng.integers(20, 70, size=2)
        ymin, xmin = rng.uniform(-10, 40, size=2)
        ymax, xmax = ymin + rng.uniform(1, 50), xmin + rng.uniform(1, 50)
        mask_h, mask_w = rng.integers(1, 30, size=2)
        pasted = mask_ops.paste_instance_mask(
            np.ones([mask_h, mask_w]), [ymin, xmin, ymax, xmax], height, width
        )
        centres_y = np.arange(height) + 0.5
        centres_x = np.arange(width) + 0.5
        u = (centres_y - ymin) / (ymax - ymin) * mask_h - 0.5
        v = (centres_x - xmin) / (xmax - xmin) * mask_w - 0.5
        coverage_y = np.clip(np.minimum(u + 1, mask_h - u), 0, 1)
        coverage_x = np.clip(np.minimum(v + 1, mask_w - v), 0, 1)
        expected = coverage_y[:, None] * coverage_x[None, :] >= 0.5
        assert pasted.dtype == np.uint8 and pasted.shape == (height, width)
        np.testing.assert_array_equal(pasted, expected.astype(np.uint8))
        full_x = coverage_x == 1
        inside_y = (centres_y >= ymin) & (centres_y <= ymax)
        np.testing.assert_array_equal(
            pasted[:, full_x], np.repeat(inside_y[:, None], full_x.sum(), axis=1)
        )


def test_paste_matches_per_pixel_reference():
    rng = np.random.default_rng(1)
    for _ in range(30):
        height, width = rng.integers(16, 80, size=2)
        ymin, xmin = rng.uniform(-15, 50, size=2)
        ymax, xmax = ymin + rng.uniform(0.5, 60), xmin + rng.uniform(0.5, 60)
        mask = rng.uniform(size=rng.integers(2, 16, size=2))
        box = [ymin, xmin, ymax, xmax]
        np.testing.assert_array_equal(
            mask_ops.paste_instance_mask(mask, box, height, width),
            references.paste_mask(mask, box, height, width),
        )


def test_paste_degenerate_or_outside_boxes_give_empty_masks():
    mask = np.ones([4, 4])
    for box in ([5, 5, 5, 9], [5, 9, 9, 2], [100, 100, 120, 120], [-30, -30, -20, -20]):
        assert not mask_ops.paste_instance_mask(mask, box, 32, 32).any()


def _np_roi_target(crop, gt_box, roi, size):
    """Per-cell bilinear sample of the crop (zero outside its cells) at each ROI cell centre."""
    cells_h, cells_w = crop.shape
    out = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            y = roi[0] + (i + 0.5) * (roi[2] - roi[0]) / size
            x = roi[1] + (j + 0.5) * (roi[3] - roi[1]) / size
            u = (y - gt_box[0]) / (gt_box[2] - gt_box[0]) * cells_h - 0.5
            v = (x - gt_box[1]) / (gt_box[3] - gt_box[1]) * cells_w - 0.5
            u0, v0 = math.floor(u), math.floor(v)
            for r, wr in ((u0, 1 - (u - u0)), (u0 + 1, u - u0)):
                for c, wc in ((v0, 1 - (v - v0)), (v0 + 1, v - v0)):
                    if 0 <= r < cells_h and 0 <= c < cells_w:
                        out[i, j] += wr * wc * crop[r, c]
    return out


def test_roi_mask_targets_match_per_cell_reference():
    rng = np.random.default_rng(3)
    crops = rng.uniform(size=(2, 3, 12, 10)).astype(np.float32)
    gt_boxes = np.float32(
        [
            [[10, 10, 40, 50], [5, 60, 60, 90], [0, 0, 64, 64]],
            [[20, 30, 50, 35], [1, 1, 9, 9], [-1] * 4],
        ]
    )
    indices = np.int32([[0, 1, 2, 0, -1], [1, 0, 0, -1, 1]])
    rois = np.zeros((2, 5, 4), np.float32)
    for b in range(2):
        for k in range(5):
            y0, x0, y1, x1 = gt_boxes[b, max(indices[b, k], 0)]
            h, w = y1 - y0, x1 - x0
            jitter = rng.uniform(-0.3, 0.3, 4) * [h, w, h, w]
            rois[b, k] = [y0, x0, y1, x1] + jitter
    got = mask_ops.roi_mask_targets(crops, gt_boxes, rois, indices, 7)
    assert got.shape == (2, 5, 7, 7)
    compiled = tf.function(mask_ops.roi_mask_targets, jit_compile=True)(
        crops, gt_boxes, rois, indices, 7
    )
    np.testing.assert_allclose(compiled, got, atol=1e-5)
    for b in range(2):
        for k in range(5):
            if indices[b, k] < 0:
                np.testing.assert_array_equal(got[b, k], 0)
                continue
            want = _np_roi_target(
                crops[b, indices[b, k]], gt_boxes[b, indices[b, k]], rois[b, k], 7
            )
            np.testing.assert_allclose(got[b, k], want, atol=1e-5)


def test_roi_mask_targets_of_a_full_crop():
    """An all-ones crop: 1 inside the groundtruth box, 0 more than half a crop cell outside."""
    crops = np.ones((1, 1, 16, 16), np.float32)
    gt_boxes = np.float32([[[20, 20, 52, 52]]])
    rois = np.float32([[[20, 20, 52, 52], [24, 28, 40, 48], [20, 4, 52, 36]]])
    got = mask_ops.roi_mask_targets(crops, gt_boxes, rois, np.zeros((1, 3), np.int32), 8).numpy()
    np.testing.assert_allclose(got[0, :2], 1.0, atol=1e-6)
    # The third ROI's left half lies left of the box (crop cells of 2 px; columns 0-3 at x < 19).
    np.testing.assert_allclose(got[0, 2, :, :4], 0.0, atol=1e-6)
    np.testing.assert_allclose(got[0, 2, :, 4:], 1.0, atol=1e-6)


def test_resample_box_masks_matches_per_cell_reference():
    """ShapeMask's prior move: masks over tight boxes resampled into their outer boxes."""
    rng = np.random.default_rng(4)
    masks = rng.uniform(size=(2, 3, 8, 8)).astype(np.float32)
    boxes = np.float32(
        [
            [[10, 10, 40, 50], [5, 20, 30, 60], [0, 0, 8, 8]],
            [[20, 30, 50, 35], [1, 1, 9, 9], [3, 4, 5, 6]],
        ]
    )
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2
    half = (boxes[..., 2:] - boxes[..., :2]) * 1.25 / 2
    outer = np.concatenate([centre - half, centre + half], axis=-1)
    got = mask_ops.resample_box_masks(masks, boxes, outer, 12).numpy()
    assert got.shape == (2, 3, 12, 12)
    for b in range(2):
        for k in range(3):
            want = _np_roi_target(masks[b, k], boxes[b, k], outer[b, k], 12)
            np.testing.assert_allclose(got[b, k], want, atol=1e-5)
    # Inside its own box a mask comes back unchanged (cell centres coincide).
    np.testing.assert_allclose(
        mask_ops.resample_box_masks(masks, boxes, boxes, 8), masks, atol=1e-5
    )
