"""Bbox-only ops: pixels outside every box never change; masks follow inside the boxes."""

import numpy as np
import pytest
import tensorflow as tf

from detection.dataloader.augment import bbox_only_ops
from detection.dataloader.augment import detection_ops
from detection.dataloader.augment import geometric_ops
from detection.dataloader.augment import magnitudes
from detection.dataloader.augment.sample import Sample

HEIGHT, WIDTH = 48, 60
# Overlapping boxes with edges off the pixel grid, one touching the border.
BOXES = np.array(
    [[0.1, 0.12, 0.55, 0.5], [0.4, 0.33, 0.8, 0.71], [0.62, 0.8, 1.0, 1.0]], np.float32
)
BBOX_ONLY_OPS = sorted(name for name in detection_ops.OPS if name.endswith("_Only_BBoxes"))
# Smaller pixel constants than the reference, so that content stays visible in 48 px images.
CONSTANTS = magnitudes.Constants(translate_bbox_const=12.0, cutout_bbox_const=5)


def _image():
    return np.random.default_rng(5).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def _masks_from(image):
    # Masks that are functions of the image's first channel; the warp fill (128 in the
    # image, 0 in masks) keeps the relation, so "masks follow the image" is checkable.
    return np.stack([image[..., 0] > t for t in (128, 180, 220)]).astype(np.uint8)


def _touched_by_boxes(boxes):
    """Pixels whose area overlaps some box (NumPy, from pixel edges)."""
    rows = np.arange(HEIGHT)[:, None]
    cols = np.arange(WIDTH)[None, :]
    touched = np.zeros((HEIGHT, WIDTH), bool)
    for ymin, xmin, ymax, xmax in boxes * [HEIGHT, WIDTH, HEIGHT, WIDTH]:
        touched |= (rows + 1 > ymin) & (rows < ymax) & (cols + 1 > xmin) & (cols < xmax)
    return touched


def _sample(image, masks=None):
    return Sample(
        tf.constant(image),
        tf.constant(BOXES),
        None if masks is None else tf.constant(masks),
        tf.range(len(BOXES), dtype=tf.int32),
    )


@pytest.mark.parametrize("op_name", BBOX_ONLY_OPS)
def test_pixels_outside_every_box_are_unchanged(op_name):
    image = _image()
    outside = ~_touched_by_boxes(BOXES)
    assert outside.sum() > 1000
    changed_inside = False
    for index in range(6):
        out = detection_ops.OPS[op_name](_sample(image), 1.0, 8, tf.constant([index, 3]), CONSTANTS)
        out_image = out.image.numpy()
        np.testing.assert_array_equal(out_image[outside], image[outside])
        np.testing.assert_array_equal(out.boxes.numpy(), BOXES)
        changed_inside |= bool((out_image != image).any())
    # With 6 draws of 3 boxes at 1/3 each, some box was processed (else the op is a no-op).
    assert changed_inside


def test_flip_in_boxes_mirrors_each_box_region():
    image = _image()
    boxes = np.array([[0.1, 0.1, 0.4, 0.45], [0.5, 0.5, 0.9, 0.95]], np.float32)
    sample = Sample(tf.constant(image), tf.constant(boxes), None, tf.constant([0, 1]))
    out = bbox_only_ops.warp_in_boxes(sample, bbox_only_ops.flip_matrix, 1.0, tf.constant([0, 0]))
    expected = image.copy()
    for ymin, xmin, ymax, xmax in boxes * [HEIGHT, WIDTH, HEIGHT, WIDTH]:
        rows = slice(int(np.floor(ymin)), int(np.ceil(ymax)))
        cols = slice(int(np.floor(xmin)), int(np.ceil(xmax)))
        expected[rows, cols] = image[rows, cols][:, ::-1]
    np.testing.assert_array_equal(out.image.numpy(), expected)


def test_translate_in_box_shifts_content_and_fills():
    image = _image()
    boxes = np.array([[0.25, 0.2, 0.75, 0.7]], np.float32)  # rows 12..36, cols 12..42
    sample = Sample(tf.constant(image), tf.constant(boxes), None, tf.constant([0]))
    out = bbox_only_ops.warp_in_boxes(
        sample, lambda size: geometric_ops.translate_matrix(0.0, 5.0), 1.0, tf.constant([0, 0])
    ).image.numpy()
    np.testing.assert_array_equal(out[17:36, 12:42], image[12:31, 12:42])
    assert (out[12:17, 12:42] == 128).all()
    np.testing.assert_array_equal(out[:12], image[:12])
    np.testing.assert_array_equal(out[36:], image[36:])


@pytest.mark.parametrize("op_name", BBOX_ONLY_OPS)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_masks_follow_the_image_inside_boxes(op_name, dtype):
    image = _image()
    masks = _masks_from(image).astype(dtype)
    for index in range(4):
        out = detection_ops.OPS[op_name](
            _sample(image, masks), 1.0, 7, tf.constant([index, 9]), CONSTANTS
        )
        assert out.masks.dtype == dtype and out.masks.shape == masks.shape
        moves_pixels = not op_name.startswith(("Equalize", "Cutout"))
        expected = _masks_from(out.image.numpy()) if moves_pixels else masks
        np.testing.assert_array_equal(out.masks.numpy(), expected.astype(dtype))


def test_no_boxes_is_a_no_op():
    image = _image()
    sample = Sample(
        tf.constant(image), tf.zeros([0, 4]), tf.zeros([0, HEIGHT, WIDTH]), tf.zeros([0], tf.int32)
    )
    for op_name in BBOX_ONLY_OPS:
        out = detection_ops.OPS[op_name](sample, 1.0, 10, tf.constant([1, 1]), CONSTANTS)
        np.testing.assert_array_equal(out.image.numpy(), image)
        assert out.boxes.shape == (0, 4) and out.masks.shape == (0, HEIGHT, WIDTH)
