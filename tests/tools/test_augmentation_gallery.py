"""The augmentation gallery shows every op and draws on a small scene."""

import numpy as np

from detection.dataloader.augment import detection_ops
from detection.tools import augmentation_gallery


def test_gallery_shows_every_op_once():
    assert sorted(augmentation_gallery.GALLERY_OPS) == sorted(detection_ops.OPS)


def test_gallery_draws_a_grid_of_cells():
    image, boxes, masks = augmentation_gallery.scene(seed=3, size=48)
    assert boxes.shape == (3, 4) and masks.shape == (3, 48, 48)
    # Boxes are tight around the masks.
    for box, mask in zip(boxes * 48, masks):
        rows, cols = np.nonzero(mask)
        np.testing.assert_array_equal(box, [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1])
    grid = augmentation_gallery.gallery(size=48, columns=6, num_policy_draws=1)
    cells = 1 + len(augmentation_gallery.GALLERY_OPS) + 1
    rows = -(-cells // 6)
    label, pad = 14, 4
    assert grid.shape == (rows * (48 + label + pad) + pad, 6 * (48 + pad) + pad, 3)
    assert grid.dtype == np.uint8
