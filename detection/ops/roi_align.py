"""Multilevel ROI align: fixed-size bilinear crops of FPN features, static shapes, XLA-friendly.

Semantics of the original framework's `multilevel_crop_and_resize`:

* Level: each box reads the pyramid level
  `floor(canonical_level + log2(sqrt(area) / canonical_size))` (4 and 224 px as in the FPN
  paper), clamped to [min_level, max_level].
* Geometry: the box is divided by the level stride `2**level`; feature pixel k of that level sits
  at coordinate k (so pixel k covers image coordinate `k * stride`, the original's convention,
  not Detectron2's half-pixel `aligned` shift).
* Sampling grid: the box is cut into output_size x output_size bins, and each bin is sampled at
  `sampling_ratio` x `sampling_ratio` points evenly inside it (at the centres of a sub-grid),
  averaged. The original's is `sampling_ratio=1`: one bilinear sample at each bin centre.
* Bilinear sampling from the 4 neighbouring feature pixels; sample positions are clamped to
  [0, size - 1] per axis, so samples past the last pixel repeat it. (The original extrapolated
  linearly for negative positions; boxes are clipped to the image before ROI align, so positions
  are never negative there.)

XLA/TPU: the pyramid is flattened once into [batch * sum_l h_l * w_l, channels]; each sample
turns into the flat row indices of its 4 neighbours in its box's level (offset + y * w_l + x),
and four gathers (one per neighbour, weighted and summed, which XLA fuses into one loop) read
every sample of every box at once. Every level's geometry is a static constant selected per
box, so there is no loop over levels and every shape is static. Measured with
`bench/roi_align.py`: this beat one gather of all 4 neighbours followed by an einsum, with and
without XLA, forward and backward. The original's one-hot einsum alternative
(`use_einsum_gather`) costs batch x boxes x h_l x w_l x channels multiply-adds per level, far
too much for level 2 outside a TPU.
"""

import math

import tensorflow as tf

from detection.ops import boxes as box_ops


def assign_levels(boxes, min_level, max_level, canonical_level=4, canonical_size=224.0):
    """Pyramid level of each box from its size (FPN paper, eq. 1).

    Args:
      boxes: [..., 4] yxyx in image pixels.
      min_level: int, the finest level available.
      max_level: int, the coarsest level available.
      canonical_level: int, the level of a box of side `canonical_size`.
      canonical_size: float, in pixels.

    Returns:
      [...] int32 levels `floor(canonical_level + log2(sqrt(area) / canonical_size))` clamped
      to [min_level, max_level]; empty boxes get min_level.
    """
    if int(min_level) > int(max_level):
        raise ValueError(f"min_level {min_level} must be <= max_level {max_level}.")
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    areas = box_ops.box_areas(boxes)
    # log2(0) is -inf, whose integer cast is undefined: a tiny positive floor sends empty boxes
    # (padding) to the clamp's lower end instead.
    sides = tf.sqrt(tf.maximum(areas, 1e-12))
    levels = tf.floor(float(canonical_level) + tf.math.log(sides / canonical_size) / math.log(2.0))
    levels = tf.clip_by_value(levels, float(min_level), float(max_level))
    return tf.cast(levels, tf.int32)


def _pyramid_levels(features, min_level, max_level):
    """Checks the feature dict; returns the list of int levels used."""
    if not features:
        raise ValueError("features is empty; expected {level: [batch, h, w, channels]}.")
    try:
        available = sorted(int(k) for k in features)
    except (TypeError, ValueError) as e:
        raise ValueError(f'features keys must be levels like "2", got {list(features)}.') from e
    min_level = available[0] if min_level is None else int(min_level)
    max_level = available[-1] if max_level is None else int(max_level)
    levels = list(range(min_level, max_level + 1))
    missing = [l for l in levels if l not in available]
    if not levels or missing:
        raise ValueError(
            f"features must hold every level from {min_level} to {max_level}, "
            f"got levels {available}."
        )
    return levels


def _axis_samples(low, high, size, grid):
    """Bilinear neighbours of `grid` evenly spaced samples of [low, high] on one axis.

    Args:
      low, high: [b, n] box extent in the level's feature pixels.
      size: [b, n] float feature size along this axis (h_l or w_l of the box's level).
      grid: Python int, output_size * sampling_ratio.

    Returns:
      (lower [b, n, grid] int32, upper [b, n, grid] int32, frac [b, n, grid] float32): the
      two neighbouring pixel indices and the weight of `upper`.
    """
    steps = (tf.range(grid, dtype=tf.float32) + 0.5) / float(grid)
    coords = low[..., tf.newaxis] + steps * (high - low)[..., tf.newaxis]
    last = (size - 1.0)[..., tf.newaxis]
    coords = tf.clip_by_value(coords, 0.0, last)
    lower = tf.floor(coords)
    upper = tf.minimum(lower + 1.0, last)
    return tf.cast(lower, tf.int32), tf.cast(upper, tf.int32), coords - lower


def multilevel_roi_align(
    features, boxes, output_size, sampling_ratio=1, min_level=None, max_level=None
):
    """Crops every box from its pyramid level to output_size x output_size (see module doc).

    Args:
      features: {str(level): [batch, h_l, w_l, channels]}, level l at stride 2**l, static
        spatial sizes and channels equal across levels.
      boxes: [batch, num_boxes, 4] yxyx in image (network-input) pixels. Gradients flow into
        the boxes through the bilinear weights; callers pass `tf.stop_gradient(rois)` as the
        original framework did.
      output_size: int, the side of each crop (7 for the box head, 14 for the mask head).
      sampling_ratio: int >= 1, samples per bin per axis (averaged); 1 is the original's.
      min_level: int, the finest level to read; default the smallest key of `features`.
      max_level: int, the coarsest level to read; default the largest key of `features`.

    Returns:
      [batch, num_boxes, output_size, output_size, channels] in the dtype of the features.
    """
    levels = _pyramid_levels(features, min_level, max_level)
    output_size = int(output_size)
    sampling_ratio = int(sampling_ratio)
    if output_size < 1 or sampling_ratio < 1:
        raise ValueError(
            f"output_size and sampling_ratio must be >= 1, got {output_size}, {sampling_ratio}."
        )
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    box_ops.check_boxes_shape(boxes)
    first = features[str(levels[0])]
    channels = first.shape[-1]
    dtype = first.dtype
    batch = tf.shape(boxes)[0]

    flat, offsets, heights, widths = [], [], [], []
    total = 0
    for level in levels:
        feature = tf.convert_to_tensor(features[str(level)])
        _, height, width, level_channels = feature.shape
        if height is None or width is None or level_channels != channels:
            raise ValueError(
                f"level {level} features {feature.shape} need static height/width and "
                f"{channels} channels like level {levels[0]}."
            )
        flat.append(tf.reshape(tf.cast(feature, dtype), [batch, height * width, channels]))
        offsets.append(total)
        heights.append(float(height))
        widths.append(float(width))
        total += height * width
    pyramid = tf.reshape(tf.concat(flat, axis=1), [-1, channels])  # [batch * total, c]

    level_index = assign_levels(boxes, levels[0], levels[-1]) - levels[0]  # [b, n]
    # Static per-level constants picked per box (a gather from a handful of values).
    offset = tf.gather(tf.constant(offsets, tf.int32), level_index)
    offset += tf.range(batch)[:, tf.newaxis] * total
    height = tf.gather(tf.constant(heights), level_index)
    width = tf.gather(tf.constant(widths), level_index)
    scaled = (
        boxes
        / tf.gather(tf.constant([2.0**level for level in levels]), level_index)[..., tf.newaxis]
    )

    grid = output_size * sampling_ratio
    y_lo, y_hi, fy = _axis_samples(scaled[..., 0], scaled[..., 2], height, grid)
    x_lo, x_hi, fx = _axis_samples(scaled[..., 1], scaled[..., 3], width, grid)
    row_width = tf.cast(width, tf.int32)[..., tf.newaxis]
    top = (offset[..., tf.newaxis] + y_lo * row_width)[..., :, tf.newaxis]  # [b, n, g, 1]
    bottom = (offset[..., tf.newaxis] + y_hi * row_width)[..., :, tf.newaxis]
    left = x_lo[..., tf.newaxis, :]  # [b, n, 1, g]
    right = x_hi[..., tf.newaxis, :]
    indices = tf.stack([top + left, top + right, bottom + left, bottom + right], axis=-1)
    fy = fy[..., :, tf.newaxis]
    fx = fx[..., tf.newaxis, :]
    weights = tf.stack(
        [(1.0 - fy) * (1.0 - fx), (1.0 - fy) * fx, fy * (1.0 - fx), fy * fx], axis=-1
    )  # [b, n, g, g, 4]
    if sampling_ratio > 1:
        weights /= float(sampling_ratio**2)

    weights = tf.cast(weights, dtype)
    # One gather per neighbour, summed: XLA fuses the four gathers and the weighted sum into
    # one loop, never materialising the 4x larger neighbour tensor.
    crops = tf.add_n(
        [tf.gather(pyramid, indices[..., k]) * weights[..., k : k + 1] for k in range(4)]
    )
    if sampling_ratio > 1:
        crops = tf.reshape(
            crops,
            [batch, -1, output_size, sampling_ratio, output_size, sampling_ratio, channels],
        )
        crops = tf.reduce_sum(crops, axis=[3, 5])
    return crops
