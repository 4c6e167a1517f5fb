"""Affine image warps (translate, shear, rotate) that move boxes and masks along.

A warp is described by its *forward* 3x3 matrix `F` in continuous pixel coordinates
(x right, y down, origin at the top-left image corner, a pixel spans [i, i + 1)):
a point (x, y) of the input lands at F @ (x, y, 1) in the output. Images and masks are
resampled with nearest neighbour (so masks move exactly as the image pixels do, and uint8
values stay exact); uncovered pixels get a fill value. A box moves to the box enclosing its
4 transformed corners.

Conventions: `translate_matrix(dx, dy)` moves content right/down; `shear_matrix(s, 0)` moves
row y right by s * y (a shear about the top edge, as the reference); `rotation_matrix(d)`
turns the content `d` degrees counterclockwise on screen about the image centre (PIL's
`Image.rotate` direction). The policies draw the sign of every magnitude at random.
"""

import math

import tensorflow as tf

from detection.dataloader.augment import sample as sample_lib


def translate_matrix(dx, dy):
    """Forward matrix moving content by (dx, dy) pixels: [3, 3] float32."""
    dx, dy = tf.cast(dx, tf.float32), tf.cast(dy, tf.float32)
    return tf.stack([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def shear_matrix(shear_x=0.0, shear_y=0.0):
    """Forward matrix x' = x + shear_x * y, y' = y + shear_y * x: [3, 3] float32."""
    sx, sy = tf.cast(shear_x, tf.float32), tf.cast(shear_y, tf.float32)
    return tf.stack([[1.0, sx, 0.0], [sy, 1.0, 0.0], [0.0, 0.0, 1.0]])


def rotation_matrix(degrees, height, width):
    """Forward matrix of a counterclockwise rotation about the centre of an image: [3, 3]."""
    radians = tf.cast(degrees, tf.float32) * (math.pi / 180.0)
    cos, sin = tf.cos(radians), tf.sin(radians)
    cx = tf.cast(width, tf.float32) / 2.0
    cy = tf.cast(height, tf.float32) / 2.0
    # y points down, so a counterclockwise turn on screen is a clockwise one in (x, y).
    return tf.stack(
        [
            [cos, sin, cx - cos * cx - sin * cy],
            [-sin, cos, cy + sin * cx - cos * cy],
            [0.0, 0.0, 1.0],
        ]
    )


def _sampling_transform(forward):
    """The op's [1, 8] map from output pixel indices to input pixel indices."""
    # Pixel index i has its centre at continuous coordinate i + 0.5.
    to_centre = tf.constant([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    from_centre = tf.constant([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    inverse = from_centre @ tf.linalg.inv(forward) @ to_centre
    return tf.concat([tf.reshape(inverse[:2, :], [6]), tf.zeros([2])], axis=0)[None, :]


def warp_images(images, forward, fill_value):
    """Warps a batch with one forward matrix.

    Args:
      images: [b, h, w, c] (uint8, int32, float32, ...); b may be 0.
      forward: [3, 3] forward matrix.
      fill_value: value of output pixels that come from outside the input.

    Returns:
      [b, h, w, c], same dtype.
    """
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=_sampling_transform(forward),
        output_shape=tf.shape(images)[1:3],
        fill_value=tf.cast(fill_value, tf.float32),
        interpolation="NEAREST",
        fill_mode="CONSTANT",
    )
    return tf.ensure_shape(warped, images.shape)


def warp_image(image, forward, fill_value):
    """[h, w, c] -> [h, w, c] (see `warp_images`)."""
    return warp_images(image[None], forward, fill_value)[0]


def warp_masks(masks, forward):
    """[n, h, w] -> [n, h, w]; pixels from outside the input become 0."""
    return warp_images(masks[..., None], forward, 0)[..., 0]


def warp_boxes(boxes, forward, image_size):
    """Boxes enclosing the transformed corners of each box, not clipped.

    Args:
      boxes: [n, 4] normalized [ymin, xmin, ymax, xmax].
      forward: [3, 3] forward matrix in pixels of an image of `image_size`.
      image_size: [2] (height, width).

    Returns:
      [n, 4] normalized float32.
    """
    height = tf.cast(image_size[0], tf.float32)
    width = tf.cast(image_size[1], tf.float32)
    ymin, xmin, ymax, xmax = tf.unstack(tf.cast(boxes, tf.float32), axis=-1)
    xs = tf.stack([xmin, xmax, xmin, xmax], axis=-1) * width
    ys = tf.stack([ymin, ymin, ymax, ymax], axis=-1) * height
    new_xs = forward[0, 0] * xs + forward[0, 1] * ys + forward[0, 2]
    new_ys = forward[1, 0] * xs + forward[1, 1] * ys + forward[1, 2]
    return tf.stack(
        [
            tf.reduce_min(new_ys, axis=-1) / height,
            tf.reduce_min(new_xs, axis=-1) / width,
            tf.reduce_max(new_ys, axis=-1) / height,
            tf.reduce_max(new_xs, axis=-1) / width,
        ],
        axis=-1,
    )


def shift_pixels(tensor, dy, dx, fill, spatial_axis=0):
    """Moves content by whole pixels (down dy, right dx); uncovered pixels get `fill`.

    A translation by whole pixels is what the nearest-neighbour warp does, at a fraction
    of its cost (a pad and a slice).

    Args:
      tensor: [..., h, w, ...] with h at `spatial_axis`.
      dy, dx: int32 scalars (any sign, any size).
      fill: value of uncovered pixels.
      spatial_axis: axis of h (w follows it).
    """
    height = tf.shape(tensor)[spatial_axis]
    width = tf.shape(tensor)[spatial_axis + 1]
    dy = tf.clip_by_value(dy, -height, height)
    dx = tf.clip_by_value(dx, -width, width)
    rank = len(tensor.shape)
    paddings = [[0, 0]] * rank
    paddings[spatial_axis] = [tf.maximum(dy, 0), tf.maximum(-dy, 0)]
    paddings[spatial_axis + 1] = [tf.maximum(dx, 0), tf.maximum(-dx, 0)]
    padded = tf.pad(tensor, paddings, constant_values=tf.cast(fill, tensor.dtype))
    begin = [0] * rank
    begin[spatial_axis] = tf.maximum(-dy, 0)
    begin[spatial_axis + 1] = tf.maximum(-dx, 0)
    shifted = tf.slice(padded, tf.stack(begin), tf.shape(tensor))
    return tf.ensure_shape(shifted, tensor.shape)


def translate_sample(sample, dx, dy, replace=128):
    """Translates image, masks and boxes by (dx, dy) rounded to whole pixels, then clips boxes
    and drops degenerate ones (the fast path of `warp_sample` for translations)."""
    dx = tf.cast(tf.round(tf.cast(dx, tf.float32)), tf.int32)
    dy = tf.cast(tf.round(tf.cast(dy, tf.float32)), tf.int32)
    forward = translate_matrix(dx, dy)
    masks = None if sample.masks is None else shift_pixels(sample.masks, dy, dx, 0, 1)
    shifted = sample_lib.Sample(
        shift_pixels(sample.image, dy, dx, replace),
        warp_boxes(sample.boxes, forward, tf.shape(sample.image)[:2]),
        masks,
        sample.indices,
    )
    return sample_lib.keep_valid_boxes(shifted)


def warp_sample(sample, forward, replace=128):
    """Warps image, masks and boxes together, then clips boxes and drops degenerate ones.

    Args:
      sample: a `Sample`.
      forward: [3, 3] forward matrix in the image's pixels.
      replace: fill value of uncovered image pixels (masks are filled with 0).
    """
    image_size = tf.shape(sample.image)[:2]
    masks = None if sample.masks is None else warp_masks(sample.masks, forward)
    warped = sample_lib.Sample(
        warp_image(sample.image, forward, replace),
        warp_boxes(sample.boxes, forward, image_size),
        masks,
        sample.indices,
    )
    return sample_lib.keep_valid_boxes(warped)
