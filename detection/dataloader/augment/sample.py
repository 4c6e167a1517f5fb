"""The unit the detection ops transform: one image with its boxes, optional masks and row ids.

`indices` remembers, for every remaining box, its row in the caller's input, so that the
caller can gather any per-instance tensor (classes, is_crowd, ...) after boxes were dropped.
`masks` is None when the caller has none; the helpers here keep it out of `tf.cond` /
`tf.switch_case` (which cannot carry None) and put it back.
"""

from typing import NamedTuple

import tensorflow as tf


class Sample(NamedTuple):
    """One image and its instances.

    Attributes:
      image: [h, w, 3] uint8.
      boxes: [n, 4] float32, normalized [ymin, xmin, ymax, xmax].
      masks: [n, h, w] instance masks (uint8 or float), or None.
      indices: [n] int32, row of each box in the input given to the policy.
    """

    image: tf.Tensor
    boxes: tf.Tensor
    masks: tf.Tensor | None
    indices: tf.Tensor


def from_inputs(image, boxes, masks):
    """The `Sample` of a policy's inputs: checked, boxes clipped, degenerate boxes dropped.

    Args:
      image: [h, w, 3] uint8.
      boxes: [n, 4] normalized.
      masks: [n, h, w] or None.

    Raises:
      ValueError: a wrong dtype or rank (static checks, at trace time).
    """
    image = tf.convert_to_tensor(image)
    boxes = tf.cast(boxes, tf.float32)
    masks = None if masks is None else tf.convert_to_tensor(masks)
    if image.dtype != tf.uint8 or image.shape.rank != 3 or image.shape[-1] not in (None, 3):
        raise ValueError(
            f"augmentation needs a uint8 [h, w, 3] image, got {image.dtype.name} {image.shape}"
        )
    if boxes.shape.rank != 2 or boxes.shape[-1] not in (None, 4):
        raise ValueError(f"augmentation needs boxes of shape [n, 4], got {boxes.shape}")
    if masks is not None and masks.shape.rank != 3:
        raise ValueError(f"augmentation needs masks of shape [n, h, w], got {masks.shape}")
    indices = tf.range(tf.shape(boxes)[0], dtype=tf.int32)
    return keep_valid_boxes(Sample(image, boxes, masks, indices))


def with_static_shapes(sample, reference):
    """`sample` with the static image and mask sizes of `reference` (the input sample)."""
    masks = sample.masks
    if masks is not None:
        masks = tf.ensure_shape(masks, [None] + reference.masks.shape[1:].as_list())
    return Sample(
        tf.ensure_shape(sample.image, reference.image.shape),
        tf.ensure_shape(sample.boxes, [None, 4]),
        masks,
        tf.ensure_shape(sample.indices, [None]),
    )


def _flat(sample):
    return tuple(t for t in sample if t is not None)


def _unflat(tensors, has_masks):
    if has_masks:
        return Sample(*tensors)
    image, boxes, indices = tensors
    return Sample(image, boxes, None, indices)


def cond(pred, true_fn, sample):
    """`true_fn(sample)` where `pred` (scalar bool tensor) holds, else `sample`."""
    has_masks = sample.masks is not None
    outputs = tf.cond(pred, lambda: _flat(true_fn(sample)), lambda: _flat(sample))
    return _unflat(outputs, has_masks)


def switch(index, branch_fns, sample):
    """`branch_fns[index](sample)` for a scalar int32 tensor `index`."""
    has_masks = sample.masks is not None
    branches = [lambda fn=fn: _flat(fn(sample)) for fn in branch_fns]
    return _unflat(tf.switch_case(index, branches), has_masks)


def keep_valid_boxes(sample):
    """Clips boxes to [0, 1] and drops boxes of zero height or width, with their masks/ids."""
    boxes = tf.clip_by_value(sample.boxes, 0.0, 1.0)
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    keep = tf.where(tf.logical_and(ymax > ymin, xmax > xmin))[:, 0]
    masks = None if sample.masks is None else tf.gather(sample.masks, keep)
    return Sample(sample.image, tf.gather(boxes, keep), masks, tf.gather(sample.indices, keep))


def box_pixel_ranges(boxes, image_size):
    """The pixels each box touches, as half-open ranges.

    Args:
      boxes: [n, 4] normalized, non-degenerate, inside [0, 1].
      image_size: [2] int32 (height, width).

    Returns:
      [n, 4] int32 (row_start, col_start, row_end, col_end); every range holds at least one
      pixel, and a pixel lies in a box's range iff its area overlaps the box.
    """
    size = tf.cast(tf.tile(image_size, [2]), tf.float32)
    scaled = tf.cast(boxes, tf.float32) * size
    starts = tf.cast(tf.floor(scaled[:, :2]), tf.int32)
    ends = tf.cast(tf.math.ceil(scaled[:, 2:]), tf.int32)
    starts = tf.clip_by_value(starts, 0, image_size - 1)
    ends = tf.clip_by_value(ends, starts + 1, image_size)
    return tf.concat([starts, ends], axis=1)


def paste(canvas, patch, top, left, spatial_axis=0):
    """`canvas` with `patch` written at (top, left): slices and concats, no full-size select.

    Args:
      canvas: [..., h, w, ...] with h at `spatial_axis`.
      patch: same rank and dtype, [..., ph, pw, ...], inside the canvas at (top, left).
      top, left: int32 scalars.
    """
    bottom = top + tf.shape(patch)[spatial_axis]
    right = left + tf.shape(patch)[spatial_axis + 1]

    def take(tensor, axis, start, stop):
        begin = [0] * len(tensor.shape)
        size = [-1] * len(tensor.shape)
        begin[axis] = start
        size[axis] = stop - start
        return tf.slice(tensor, tf.stack(begin), tf.stack(size))

    height = tf.shape(canvas)[spatial_axis]
    width = tf.shape(canvas)[spatial_axis + 1]
    band = take(canvas, spatial_axis, top, bottom)
    band = tf.concat(
        [take(band, spatial_axis + 1, 0, left), patch, take(band, spatial_axis + 1, right, width)],
        axis=spatial_axis + 1,
    )
    pasted = tf.concat(
        [take(canvas, spatial_axis, 0, top), band, take(canvas, spatial_axis, bottom, height)],
        axis=spatial_axis,
    )
    return tf.ensure_shape(pasted, canvas.shape)
