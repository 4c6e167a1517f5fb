"""Cutout (a grey square at a random place) and BBox_Cutout (a patch inside a random box).

Cutout (DeVries & Taylor 2017) hides part of the image; the boxes and masks stay as they were,
since the objects are still there, only occluded.
"""

import tensorflow as tf

from detection.dataloader.augment import sample as sample_lib
from detection.dataloader.augment import seeds


def fill_rectangle(image, top, left, bottom, right, value):
    """Sets rows [top, bottom) x cols [left, right) (clipped to the image) to `value`.

    Args:
      image: [h, w, c].
      top, left, bottom, right: int32 scalars, may lie outside the image.
      value: scalar or [c], cast to the image dtype.
    """
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    top = tf.clip_by_value(top, 0, height)
    left = tf.clip_by_value(left, 0, width)
    bottom = tf.clip_by_value(bottom, top, height)
    right = tf.clip_by_value(right, left, width)
    patch_shape = tf.stack([bottom - top, right - left, tf.shape(image)[2]])
    patch = tf.broadcast_to(tf.cast(value, image.dtype), patch_shape)
    return sample_lib.paste(image, patch, top, left)


def cutout(image, pad_size, seed, replace=128):
    """Fills a square of side 2 * pad_size centred on a uniformly drawn pixel.

    Args:
      image: [h, w, 3] uint8.
      pad_size: half side in pixels (int or int32 scalar); the square is clipped to the image.
      seed: [2] seed of the centre.
      replace: fill value.

    Returns:
      [h, w, 3] uint8.
    """
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    centre_y = seeds.uniform_int(seeds.child(seed, 0), 0, height)
    centre_x = seeds.uniform_int(seeds.child(seed, 1), 0, width)
    return fill_rectangle(
        image,
        centre_y - pad_size,
        centre_x - pad_size,
        centre_y + pad_size,
        centre_x + pad_size,
        replace,
    )


def bbox_cutout(image, boxes, pad_fraction, seed, replace_with_mean=False, replace=128):
    """Cutout centred inside one randomly chosen box, sized relative to that box.

    The patch is 2 * int(pad_fraction * box_h / 2) by 2 * int(pad_fraction * box_w / 2)
    pixels, centred on a uniformly drawn pixel of the box and clipped to the image (it may
    reach outside the box).

    Args:
      image: [h, w, 3] uint8.
      boxes: [n, 4] normalized, non-degenerate; nothing happens when n = 0.
      pad_fraction: Python float, patch size relative to the box size.
      seed: [2] seed of the box choice and the centre.
      replace_with_mean: fill with the box's mean colour instead of `replace`.
      replace: fill value.

    Returns:
      [h, w, 3] uint8.
    """
    num_boxes = tf.shape(boxes)[0]
    # Without boxes, a zero-size patch at a dummy box (no tf.cond: smaller tf.data graphs).
    has_boxes = num_boxes > 0
    boxes = tf.concat([boxes, tf.constant([[0.0, 0.0, 1.0, 1.0]])], axis=0)
    index = seeds.uniform_int(seeds.child(seed, 0), 0, tf.maximum(num_boxes, 1))
    ranges = sample_lib.box_pixel_ranges(boxes[index][None], tf.shape(image)[:2])[0]
    top, left, bottom, right = tf.unstack(ranges)
    pad_h = tf.cast(pad_fraction * tf.cast(bottom - top, tf.float32) / 2.0, tf.int32)
    pad_w = tf.cast(pad_fraction * tf.cast(right - left, tf.float32) / 2.0, tf.int32)
    pad_h = tf.where(has_boxes, pad_h, 0)
    centre_y = seeds.uniform_int(seeds.child(seed, 1), top, bottom)
    centre_x = seeds.uniform_int(seeds.child(seed, 2), left, right)
    if replace_with_mean:
        region = tf.cast(image[top:bottom, left:right], tf.float32)
        value = tf.reduce_mean(region, axis=[0, 1])
    else:
        value = replace
    return fill_rectangle(
        image, centre_y - pad_h, centre_x - pad_w, centre_y + pad_h, centre_x + pad_w, value
    )
