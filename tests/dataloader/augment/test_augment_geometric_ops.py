"""Geometric ops: a filled rectangle drawn at a box stays inside the transformed box."""

import numpy as np
import pytest
import tensorflow as tf

from detection.dataloader.augment import geometric_ops
from detection.dataloader.augment.sample import Sample

HEIGHT, WIDTH = 48, 64
# Pixel-aligned boxes (ymin, xmin, ymax, xmax) in pixels; the last one touches the border.
PIXEL_BOXES = [(10, 20, 30, 36), (4, 6, 12, 40), (30, 50, 48, 64)]

TRANSFORMS = {
    "translate_x": lambda: geometric_ops.translate_matrix(7.0, 0.0),
    "translate_y_negative": lambda: geometric_ops.translate_matrix(0.0, -5.5),
    "shear_x": lambda: geometric_ops.shear_matrix(0.3, 0.0),
    "shear_x_negative": lambda: geometric_ops.shear_matrix(-0.21, 0.0),
    "shear_y": lambda: geometric_ops.shear_matrix(0.0, 0.3),
    "rotate_30": lambda: geometric_ops.rotation_matrix(30.0, HEIGHT, WIDTH),
    "rotate_minus_17": lambda: geometric_ops.rotation_matrix(-17.0, HEIGHT, WIDTH),
    "rotate_90": lambda: geometric_ops.rotation_matrix(90.0, HEIGHT, WIDTH),
}


def _rectangle_image(pixel_box):
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    y0, x0, y1, x1 = pixel_box
    image[y0:y1, x0:x1] = 255
    return image


def _normalized(pixel_box):
    y0, x0, y1, x1 = pixel_box
    return np.array([[y0 / HEIGHT, x0 / WIDTH, y1 / HEIGHT, x1 / WIDTH]], np.float32)


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
@pytest.mark.parametrize("pixel_box", PIXEL_BOXES)
def test_rectangle_is_enclosed_by_transformed_box(name, pixel_box):
    forward = TRANSFORMS[name]()
    image = _rectangle_image(pixel_box)
    warped = geometric_ops.warp_image(tf.constant(image), forward, 128).numpy()
    box = geometric_ops.warp_boxes(_normalized(pixel_box), forward, [HEIGHT, WIDTH]).numpy()[0]
    inside = (box >= 0.0).all() and (box <= 1.0).all()
    box = np.clip(box, 0.0, 1.0) * [HEIGHT, WIDTH, HEIGHT, WIDTH]
    # Only the three values 0 (background), 255 (object) and 128 (fill) can appear.
    assert set(np.unique(warped)) <= {0, 128, 255}
    rows, cols = np.nonzero(warped[..., 0] == 255)
    assert rows.size > 0
    # Nearest-neighbour sampling: each object pixel's centre lies in the transformed shape.
    eps = 1e-3
    assert rows.min() + 0.5 >= box[0] - eps and rows.max() + 0.5 <= box[2] + eps
    assert cols.min() + 0.5 >= box[1] - eps and cols.max() + 0.5 <= box[3] + eps
    # A rectangle becomes a parallelogram, whose enclosing box is tight unless the image
    # border cut the parallelogram.
    if inside:
        tight = [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]
        assert np.abs(np.array(tight) - box).max() <= 1.5, (tight, box)


def test_integer_translation_is_exact():
    image = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    warped = geometric_ops.warp_image(image, geometric_ops.translate_matrix(5, -3), 128).numpy()
    np.testing.assert_array_equal(warped[: HEIGHT - 3, 5:], image[3:, : WIDTH - 5])
    assert (warped[:, :5] == 128).all() and (warped[HEIGHT - 3 :] == 128).all()


@pytest.mark.parametrize("dtype", [tf.uint8, tf.float32])
def test_masks_follow_the_image_exactly(dtype):
    masks = np.stack([_rectangle_image(b)[..., 0] // 255 for b in PIXEL_BOXES])
    boxes = np.concatenate([_normalized(b) for b in PIXEL_BOXES])
    # Encode each instance in its own bit of one channel, so the image carries every mask.
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    image[..., 0] = (masks * np.array([1, 2, 4])[:, None, None]).sum(0)
    sample = Sample(
        tf.constant(image),
        tf.constant(boxes),
        tf.cast(masks, dtype),
        tf.range(len(PIXEL_BOXES), dtype=tf.int32),
    )
    forward = geometric_ops.rotation_matrix(23.0, HEIGHT, WIDTH)
    out = geometric_ops.warp_sample(sample, forward, replace=0)
    assert out.masks.dtype == dtype
    warped_channel = out.image.numpy()[..., 0].astype(int)
    for row, index in enumerate(out.indices.numpy()):
        expected = (warped_channel >> index) & 1
        np.testing.assert_array_equal(out.masks.numpy()[row].astype(int), expected)


def test_boxes_moved_out_of_the_image_are_dropped_with_their_masks():
    boxes = np.concatenate([_normalized(b) for b in PIXEL_BOXES])
    masks = np.stack([_rectangle_image(b)[..., 0] for b in PIXEL_BOXES])
    sample = Sample(
        tf.zeros([HEIGHT, WIDTH, 3], tf.uint8),
        tf.constant(boxes),
        tf.constant(masks),
        tf.constant([0, 1, 2]),
    )
    # 30 px left: box 1 (x 6..40) survives clipped, box 0 (x 20..36) survives, box 2 too.
    out = geometric_ops.warp_sample(sample, geometric_ops.translate_matrix(-30.0, 0.0))
    np.testing.assert_array_equal(out.indices.numpy(), [0, 1, 2])
    # 40 px left: box 0 (x 20..36) and box 1 (x 6..40) leave; box 2 (x 50..64) stays.
    out = geometric_ops.warp_sample(sample, geometric_ops.translate_matrix(-40.0, 0.0))
    np.testing.assert_array_equal(out.indices.numpy(), [2])
    np.testing.assert_allclose(out.boxes.numpy(), [[30 / 48, 10 / 64, 1.0, 24 / 64]], atol=1e-6)
    assert out.masks.shape == (1, HEIGHT, WIDTH)
    # Everything leaves: n = 0 with consistent shapes.
    out = geometric_ops.warp_sample(sample, geometric_ops.translate_matrix(0.0, 100.0))
    assert out.boxes.shape == (0, 4) and out.masks.shape == (0, HEIGHT, WIDTH)
    assert out.indices.shape == (0,)


@pytest.mark.parametrize("dx,dy", [(5, -3), (-12, 7), (0, 0), (70, 0), (0, -48), (3.4, -2.6)])
def test_translate_sample_equals_the_warp_by_whole_pixels(dx, dy):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    boxes = np.concatenate([_normalized(b) for b in PIXEL_BOXES])
    masks = np.stack([_rectangle_image(b)[..., 0] for b in PIXEL_BOXES])
    sample = Sample(tf.constant(image), tf.constant(boxes), tf.constant(masks), tf.range(3))
    fast = geometric_ops.translate_sample(sample, dx, dy, replace=128)
    forward = geometric_ops.translate_matrix(np.round(dx), np.round(dy))
    slow = geometric_ops.warp_sample(sample, forward, replace=128)
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
