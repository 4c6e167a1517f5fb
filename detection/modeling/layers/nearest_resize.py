"""Nearest-neighbour resizing of feature maps between pyramid levels.

Scale-permuted backbones and NAS-FPN move features between levels with nearest-neighbour
upsampling. The original framework offered two implementations: a repeat (broadcast) based
one, which lowers to cheap copies on TPU, and the native `tf.image` op. Both give the same
values for integer scales. Other size changes (inputs whose side is not a multiple of the
coarsest stride) use a gather with static indices that samples like `tf.image.resize`
(half-pixel centres): unlike the native op, its gradient compiles with XLA on every device.
"""

import keras
import numpy as np
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


def nearest_indices(in_size, out_size):
    """Source index of each output position, as `tf.image.resize(method='nearest')`.

    `floor((i + 0.5) * in_size / out_size)` in float32 (the op's arithmetic), clipped.

    Returns:
      int32 numpy array `[out_size]`.
    """
    scale = np.float32(in_size) / np.float32(out_size)
    centres = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale
    return np.minimum(np.floor(centres).astype(np.int32), in_size - 1)


def resize_nearest(x, size, use_native_resize_op=False):
    """Nearest-neighbour resize of `x` to the static spatial `size`.

    Integer upsampling factors use `upsample_repeat`; other size changes gather with
    `nearest_indices`. With `use_native_resize_op`, every size change uses
    `tf.image.resize(..., method='nearest')` (dtype preserved; its gradient has no XLA
    kernel on CPU/GPU).

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
    if use_native_resize_op:
        return tf.image.resize(x, [target_h, target_w], method="nearest")
    if integer_up:
        return upsample_repeat(x, target_h // height, target_w // width)
    x = tf.gather(x, nearest_indices(height, target_h), axis=1)
    return tf.gather(x, nearest_indices(width, target_w), axis=2)
