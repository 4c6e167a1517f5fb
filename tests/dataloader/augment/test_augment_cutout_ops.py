"""Cutout changes one clipped square; BBox_Cutout one patch centred inside a box."""

import numpy as np
import pytest
import tensorflow as tf

from detection.dataloader.augment import cutout_ops

HEIGHT, WIDTH = 40, 56


def _image():
    # Values below 128, so every replaced pixel is visible as a change.
    return np.random.default_rng(3).integers(0, 100, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def _changed_rectangle(before, after):
    changed = (after != before).any(-1)
    assert (after[changed] == 128).all()
    rows, cols = np.nonzero(changed)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    # The changed pixels fill their bounding rectangle: a rectangle, nothing elsewhere.
    assert changed[top:bottom, left:right].all()
    assert changed.sum() == (bottom - top) * (right - left)
    return top, left, bottom, right


@pytest.mark.parametrize("pad_size", [1, 4, 9])
def test_cutout_changes_only_a_clipped_square(pad_size):
    image = _image()
    for index in range(20):
        out = cutout_ops.cutout(tf.constant(image), pad_size, tf.constant([index, 7])).numpy()
        top, left, bottom, right = _changed_rectangle(image, out)
        assert bottom - top <= 2 * pad_size and right - left <= 2 * pad_size
        # A side is shorter than 2 * pad_size only where the square was clipped.
        assert bottom - top == 2 * pad_size or top == 0 or bottom == HEIGHT
        assert right - left == 2 * pad_size or left == 0 or right == WIDTH


def test_cutout_with_zero_pad_changes_nothing():
    image = _image()
    out = cutout_ops.cutout(tf.constant(image), 0, tf.constant([1, 2])).numpy()
    np.testing.assert_array_equal(out, image)


def test_cutout_is_deterministic_per_seed_and_varies_across_seeds():
    image = tf.constant(_image())
    first = cutout_ops.cutout(image, 5, tf.constant([4, 4])).numpy()
    np.testing.assert_array_equal(first, cutout_ops.cutout(image, 5, tf.constant([4, 4])))
    others = [cutout_ops.cutout(image, 5, tf.constant([4, s])).numpy() for s in range(5, 10)]
    assert any((other != first).any() for other in others)


def test_bbox_cutout_patch_is_centred_inside_a_box():
    image = _image()
    boxes = np.array([[0.1, 0.1, 0.5, 0.4], [0.55, 0.6, 0.95, 0.9]], np.float32)
    pixel_boxes = boxes * [HEIGHT, WIDTH, HEIGHT, WIDTH]
    fraction = 0.75
    for index in range(20):
        out = cutout_ops.bbox_cutout(
            tf.constant(image), tf.constant(boxes), fraction, tf.constant([index, 1])
        ).numpy()
        top, left, bottom, right = _changed_rectangle(image, out)
        centre_y, centre_x = (top + bottom) / 2, (left + right) / 2
        box = [
            b
            for b in pixel_boxes
            if b[0] - 1 <= centre_y <= b[2] + 1 and b[1] - 1 <= centre_x <= b[3] + 1
        ]
        assert len(box) == 1
        box_h, box_w = box[0][2] - box[0][0], box[0][3] - box[0][1]
        # The patch is at most pad_fraction of the box (pixel rounding: one pixel more).
        assert bottom - top <= fraction * (box_h + 1) and right - left <= fraction * (box_w + 1)


def test_bbox_cutout_mean_fill_and_no_boxes():
    image = _image()
    boxes = tf.constant([[0.2, 0.2, 0.8, 0.8]])
    out = cutout_ops.bbox_cutout(
        tf.constant(image), boxes, 0.5, tf.constant([0, 0]), replace_with_mean=True
    ).numpy()
    changed = (out != image).any(-1)
    region = image[8:32, 11:45].reshape(-1, 3).astype(float)
    np.testing.assert_array_equal(out[changed][0], region.mean(0).astype(np.uint8))
    empty = cutout_ops.bbox_cutout(tf.constant(image), tf.zeros([0, 4]), 0.5, tf.constant([0, 0]))
    np.testing.assert_array_equal(empty.numpy(), image)
