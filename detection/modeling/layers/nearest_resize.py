"""Nearest-neighbour resizing of feature maps between pyramid levels.

Scale-permuted backbones and NAS-FPN move features between levels with nearest-neighbour
upsampling. The original framework offered two implementations: a repeat (broadcast) based
one, which lowers to cheap copies on TPU, and the native `tf.image` op, which also handles
sizes that are not integer multiples. Both give the same values for integer scales.
"""

import keras
import tensorflow as tf


def upsample_repeat(x, scale_h, scale_w):
    """Repeats every pixel `scale_h x scale_w` times.

    Args:
      x: `[batch, h, w, c]`.
      scale_h: integer vertical factor (>= 1).
      scale_w: integer horizontal factor (>= 1).

    Returns:
      `[batch, h * scale_h, w * scale_w, c]`.
    """
    if scale_h > 1:
        x = keras.ops.repeat(x, scale_h, axis=1)
    if scale_w > 1:
        x = keras.ops.repeat(x, scale_w, axis=2)
    return x


def resize_nearest(x, size, use_native_resize_op=False):
    """Nearest-neighbour resize of `x` to the static spatial `size`.

    Integer upsampling factors use `upsample_repeat` unless `use_native_resize_op`; any other
    size change (or the native flag) uses `tf.image.resize(..., method='nearest')`, which keeps
    the input dtype.

    Args:
      x: `[batch, h, w, c]` with static `h` and `w`.
      size: `(target_h, target_w)` python ints.
      use_native_resize_op: always use `tf.image.resize`.

    Returns:
      `[batch, target_h, target_w, c]`.

    Raises:
      ValueError: if the spatial dimensions of `x` are not static.
    """
    height, width = x.shape[1], x.shape[2]
    if height is None or width is None:
        raise ValueError(f"resize_nearest: needs static height and width, got {x.shape}")
    target_h, target_w = int(size[0]), int(size[1])
    if (height, width) == (target_h, target_w):
        return x
    integer_up = (
        target_h >= height
        and target_w >= width
        and target_h % height == 0
        and target_w % width == 0
    )
    if integer_up and not use_native_resize_op:
        return upsample_repeat(x, target_h // height, target_w // width)
    return tf.image.resize(x, [target_h, target_w], method="nearest")
